/* wy_seen — a bounded set of recently seen ids (Kafka event_id) so idempotent
 * consumers can skip an event they already applied. Oldest ids are evicted first. */
#ifndef WY_SEEN_H
#define WY_SEEN_H

#include "wy_core.h"

typedef struct wy_seen_s wy_seen_t;

/* Longest id the set stores; longer ids are hashed and compared on their first
 * WY_SEEN_MAX_ID bytes only (Envelope event_ids are 36-char UUIDs). */
#define WY_SEEN_MAX_ID 128

/* New empty set that remembers at most `capacity` ids (>= 1); when full, adding
 * a new id evicts the oldest one (FIFO). Memory is O(capacity), allocated here.
 * Caller frees with wy_seen_free. Not thread-safe: one owner (the loop). */
wy_seen_t *wy_seen_new(size_t capacity);

/* Frees the set and every id it holds. NULL is accepted. */
void wy_seen_free(wy_seen_t *s);

/* Returns true if `id` is in the set (it was added before and not yet evicted);
 * otherwise adds a copy of it (evicting the oldest id when full) and returns
 * false. O(1) on average. */
bool wy_seen_check_add(wy_seen_t *s, const char *id);

/* True if `id` is in the set; never adds. */
bool wy_seen_contains(const wy_seen_t *s, const char *id);

/* Number of ids currently held (<= capacity). */
size_t wy_seen_count(const wy_seen_t *s);

#endif
