/* float16 and bfloat16 output: the float32 values rounded to nearest even, tile by tile.
 *
 * A half-precision fill computes each float32 element exactly as a float32 fill does and rounds it once,
 * FL_HALF_TILE elements at a time through a small buffer on the stack (never a float32 copy of the blob).
 * float16 is IEEE binary16 (subnormals, overflow to infinity); bfloat16 keeps float32's exponent and the
 * top 8 significand bits.  The AVX2 and AVX-512 dispatch paths convert float16 with F16C; all paths give the
 * same bits. */
#ifndef FILLERS_HALF_H
#define FILLERS_HALF_H

#include <stdint.h>
#include "philox.h"

#define FL_HALF_TILE 1024

enum { FL_HALF_F16 = 0, FL_HALF_BF16 = 1 };

/* out[i] = in[i] rounded to nearest even, as float16 (kind FL_HALF_F16) or bfloat16 bits. */
void fl_round_half(const float *in, int64_t n, int kind, uint16_t *out);

/* positive_unitball in half precision: `rows` rows of `row_len` elements (flat indices first ..): each
 * row's float32 draw summed in order (as fl_normalize_rows_f32), then drawn again and divided by the sum,
 * then rounded; the same values as the float32 fill, rounded. */
void fl_philox_unitball_half(const fl_philox_key *key, int64_t first, int64_t rows, int64_t row_len, int kind,
                             uint16_t *out);

#endif
