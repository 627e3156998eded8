/*
 * admin_cols.c — runs admin-console commands through libpq and prints what
 * came back, one line per command, for t/integration/admin.sh to compare
 * with its golden list:
 *   COMMAND|name:typeoid,name:typeoid,...|rows=N
 *   COMMAND|ERROR SQLSTATE message
 *   COMMAND|OK tag                         (no result columns)
 *
 * Usage: admin_cols CONNINFO COMMAND...
 */
#include "t/integration/itest.h"

static void run(PGconn *conn, const char *cmd)
{
	PGresult *r = PQexec(conn, cmd);

	printf("%s|", cmd);
	switch (PQresultStatus(r)) {
	case PGRES_TUPLES_OK:
		for (int i = 0; i < PQnfields(r); i++)
			printf("%s%s:%u", i ? "," : "", PQfname(r, i), PQftype(r, i));
		printf("|rows=%d\n", PQntuples(r));
		break;
	case PGRES_COMMAND_OK: printf("OK %s\n", PQcmdStatus(r)); break;
	default: {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		printf("ERROR %s %s\n", state ? state : "-", msg ? msg : PQerrorMessage(conn));
		break;
	}
	}
	PQclear(r);
}

int main(int argc, char **argv)
{
	PGconn *conn;

	if (argc < 3) {
		fprintf(stderr, "usage: admin_cols CONNINFO COMMAND...\n");
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK) {
		printf("CONNECT|ERROR %s", PQerrorMessage(conn));
		PQfinish(conn);
		return 1;
	}
	for (int i = 2; i < argc; i++)
		run(conn, argv[i]);
	PQfinish(conn);
	return 0;
}
