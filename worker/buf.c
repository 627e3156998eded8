/*
 * buf.c — I/O buffers for a worker's connections. A connection holds a
 * buffer only while it has bytes in flight; empty buffers go back to a
 * per-worker free list, so an idle client costs no buffer memory.
 */
#include "worker.h"

#include <stdlib.h>
#include <string.h>

bool buf_reserve(struct buf *b)
{
	if (b->data)
		return true;
	if (W.nbuf_pool > 0) {
		b->data = W.buf_pool[--W.nbuf_pool];
	} else {
		b->data = malloc(W.buf_size);
		if (!b->data)
			return false;
	}
	b->start = b->end = b->scan = 0;
	return true;
}

void buf_release(struct buf *b)
{
	if (!b->data)
		return;
	if (W.nbuf_pool < W.buf_pool_cap)
		W.buf_pool[W.nbuf_pool++] = b->data;
	else
		free(b->data);
	b->data = NULL;
	b->start = b->end = b->scan = 0;
}

/* Move unsent bytes to the front, or give the memory back when empty. */
void buf_compact(struct buf *b)
{
	if (!b->data)
		return;
	if (b->start == b->end) {
		buf_release(b);
		return;
	}
	if (b->start == 0)
		return;
	memmove(b->data, b->data + b->start, b->end - b->start);
	b->end -= b->start;
	b->scan -= b->start;
	b->start = 0;
}
