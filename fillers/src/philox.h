/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
 *
 * The counter-based generator behind fillers' default stream.  Raw word j of the stream (seed, stream) is
 * word j % 4 of the block with key (seed_lo, seed_hi) and counter (b_lo, b_hi, stream_lo, stream_hi),
 * b = j / 4.  Pure functions, no state: any element can be computed from its index alone.
 */
#ifndef FILLERS_PHILOX_H
#define FILLERS_PHILOX_H

#include <stdint.h>

#define FL_PHILOX_M0 0xD2511F53u
#define FL_PHILOX_M1 0xCD9E8D57u
#define FL_PHILOX_W0 0x9E3779B9u
#define FL_PHILOX_W1 0xBB67AE85u

typedef struct {
    uint64_t seed;   /* the key: (seed & 0xffffffff, seed >> 32) */
    uint64_t stream; /* counter words 2 and 3 */
} fl_philox_key;

/* One Philox4x32-10 block: counter (c0..c3), key (k0, k1) -> out[0..3]. */
static inline void fl_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                    uint32_t k0, uint32_t k1, uint32_t out[4])
{
    for (int round = 0; round < 10; ++round) {
        uint64_t p0 = (uint64_t)FL_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)FL_PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += FL_PHILOX_W0;
        k1 += FL_PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Block number b of the stream described by key. */
static inline void fl_philox_block(const fl_philox_key *key, uint64_t b, uint32_t out[4])
{
    fl_philox4x32_10((uint32_t)b, (uint32_t)(b >> 32), (uint32_t)key->stream, (uint32_t)(key->stream >> 32),
                     (uint32_t)key->seed, (uint32_t)(key->seed >> 32), out);
}

#endif
