// prepared_node.js — node-postgres named queries through pgshoal in
// transaction mode (issue #7): several clients, each running named queries
// (Parse once per connection, then Bind/Execute by name) whose next
// transaction may land on another server. Connection settings come from
// PGHOST, PGPORT, PGUSER, PGDATABASE. Exit status 0 when every result matched.
'use strict';
const { Client } = require('pg');

async function client(k) {
  const c = new Client();
  await c.connect();
  for (let i = 0; i < 50; i++) {
    const r = await c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [i, k] });
    if (r.rows[0].v !== i + k) throw new Error(`client ${k}: add(${i}) = ${r.rows[0].v}`);
    const s = await c.query({ name: `own_${k}`, text: `SELECT $1::text || '-${k}' AS v`, values: [String(i)] });
    if (s.rows[0].v !== `${i}-${k}`) throw new Error(`client ${k}: own = ${s.rows[0].v}`);
    if (i % 10 === 0) {
      await c.query('BEGIN');
      const t = await c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [1, 1] });
      if (t.rows[0].v !== 2) throw new Error('in transaction');
      await c.query('COMMIT');
    }
  }
  await c.end();
}

Promise.all([...Array(8).keys()].map(client)).then(
  () => { console.log('node-postgres: 8 clients x 50 named queries: ok'); },
  (e) => { console.error('node-postgres:', e.message); process.exit(1); });
