/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A worker's connection-record ring: single producer (the worker, when a
 * relayed connection closes), single consumer (relayd's control thread, which
 * sends the records to controld in batches). Fixed size, allocated once with
 * the worker: nothing on the hot path allocates, locks or waits. A record that
 * finds the ring full is dropped and counted (dropped, read by engine_stats).
 */
#ifndef NAVE_RECRING_H
#define NAVE_RECRING_H

#include "engine.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define REC_RING_SIZE 4096 /* a power of two */

struct rec_ring {
	_Atomic uint32_t head; /* [consumer] the next record to read */
	char pad0[60];
	_Atomic uint32_t tail; /* [producer] the next slot to write */
	_Atomic uint64_t dropped;
	char pad1[52];
	struct engine_record slot[REC_RING_SIZE];
};

/*
 * Producer: the slot for a new record (filled by the caller, then
 * rec_ring_commit), or NULL when the ring is full (the drop is counted).
 */
static inline struct engine_record *rec_ring_reserve(struct rec_ring *r)
{
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);

	if (tail - head >= REC_RING_SIZE) {
		atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
		return NULL;
	}
	return &r->slot[tail & (REC_RING_SIZE - 1)];
}

/* Producer: publishes the slot rec_ring_reserve gave. */
static inline void rec_ring_commit(struct rec_ring *r)
{
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);

	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
}

/* Consumer: records waiting. */
static inline uint32_t rec_ring_count(struct rec_ring *r)
{
	return atomic_load_explicit(&r->tail, memory_order_acquire) -
	       atomic_load_explicit(&r->head, memory_order_relaxed);
}

/* Consumer: the i-th waiting record (i < rec_ring_count). */
static inline const struct engine_record *rec_ring_peek(struct rec_ring *r, uint32_t i)
{
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);

	return &r->slot[(head + i) & (REC_RING_SIZE - 1)];
}

/* Consumer: the first n waiting records are read; their slots go back to the producer. */
static inline void rec_ring_release(struct rec_ring *r, uint32_t n)
{
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);

	atomic_store_explicit(&r->head, head + n, memory_order_release);
}

static inline uint64_t rec_ring_dropped(struct rec_ring *r)
{
	return atomic_load_explicit(&r->dropped, memory_order_relaxed);
}

#endif
