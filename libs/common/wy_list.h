/* wy_list — an intrusive, circular, doubly linked list (the shape of the Linux
 * kernel's list_head and libuv's QUEUE): the node lives inside the element, so
 * linking and unlinking never allocate and an element can unlink itself in O(1).
 *
 * Header-only. Not thread-safe: a list has one owner thread. */
#ifndef WY_LIST_H
#define WY_LIST_H

#include <stdbool.h>
#include <stddef.h>

/* A list head, or a node embedded in an element. A zeroed node (calloc) is a
 * valid unlinked node; a head must be set up with wy_list_init. */
typedef struct wy_list {
    struct wy_list *prev, *next;
} wy_list_t;

/* The element that holds node `ptr` as its member `member`. */
#define wy_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void *wy__list_elem(wy_list_t *n, size_t off)
{
    return n ? (char *)n - off : NULL;
}

/* The element holding node n (NULL stays NULL); n is evaluated once. */
#define wy_list_entry(n, type, member) ((type *)wy__list_elem((n), offsetof(type, member)))

/* Empty list head (or an unlinked node). */
static inline void wy_list_init(wy_list_t *h)
{
    h->prev = h->next = h;
}

static inline bool wy_list_empty(const wy_list_t *h)
{
    return h->next == h || h->next == NULL;
}

/* True if node n is in a list (false for a zeroed or initialised node). */
static inline bool wy_list_linked(const wy_list_t *n)
{
    return n->next != NULL && n->next != n;
}

static inline void wy__list_insert(wy_list_t *n, wy_list_t *prev, wy_list_t *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

/* Append n at the tail of h. n must not be linked. */
static inline void wy_list_push_back(wy_list_t *h, wy_list_t *n)
{
    wy__list_insert(n, h->prev, h);
}

/* Insert n at the head of h. n must not be linked. */
static inline void wy_list_push_front(wy_list_t *h, wy_list_t *n)
{
    wy__list_insert(n, h, h->next);
}

/* Unlink n from whatever list holds it and leave it unlinked; a node that is
 * not linked is left as it is, so removing twice is harmless. */
static inline void wy_list_remove(wy_list_t *n)
{
    if (!wy_list_linked(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    wy_list_init(n);
}

/* First / last node of h, NULL if empty. */
static inline wy_list_t *wy_list_first(const wy_list_t *h)
{
    return wy_list_empty(h) ? NULL : h->next;
}
static inline wy_list_t *wy_list_last(const wy_list_t *h)
{
    return wy_list_empty(h) ? NULL : h->prev;
}

/* Unlink and return the first node of h, NULL if empty. */
static inline wy_list_t *wy_list_pop_front(wy_list_t *h)
{
    wy_list_t *n = wy_list_first(h);
    if (n)
        wy_list_remove(n);
    return n;
}

/* Move every node of src to the tail of dst, in order; src is left empty.
 * O(1): this is how a batch is taken out of a shared list under a lock. */
static inline void wy_list_splice_back(wy_list_t *dst, wy_list_t *src)
{
    if (wy_list_empty(src))
        return;
    wy_list_t *first = src->next, *last = src->prev;
    first->prev = dst->prev;
    dst->prev->next = first;
    last->next = dst;
    dst->prev = last;
    wy_list_init(src);
}

/* Iterate the nodes of h. `pos` must not be unlinked inside the body. */
#define wy_list_foreach(pos, h) for ((pos) = (h)->next; (pos) != (h); (pos) = (pos)->next)

/* Iterate the nodes of h; the body may unlink (and free) `pos`. */
#define wy_list_foreach_safe(pos, tmp, h)                                                          \
    for ((pos) = (h)->next, (tmp) = (pos)->next; (pos) != (h); (pos) = (tmp), (tmp) = (pos)->next)

#endif
