/* Draw-free kernels shared by both random streams. */
#ifndef FILLERS_COMMON_H
#define FILLERS_COMMON_H

#include <stdint.h>

/* out[0 .. n) = value.  streaming (for blobs larger than the caches): non-temporal stores on x86-64, which
 * write each line to memory without reading it first; the values are the same either way. */
void fl_constant_f32(int64_t n, float value, int streaming, float *out);
void fl_constant_f64(int64_t n, double value, int streaming, double *out);
void fl_constant_u16(int64_t n, uint16_t value, int streaming, uint16_t *out); /* float16 / bfloat16 bits */

/* Caffe's bilinear upsampling kernel for a K x K filter: elements first .. first + n - 1 of a blob whose
 * two last axes are K x K.  Computed in the output type, as Caffe's BilinearFiller<Dtype> does. */
void fl_bilinear_f32(int64_t first, int64_t n, int64_t k, float *out);
void fl_bilinear_f64(int64_t first, int64_t n, int64_t k, double *out);

/* dirac / identity / eye: a blob of shape (O, in_channels, spatial...) flattened, zero except element
 * (o, o % per_group, center) = value for every o with o % per_group < in_channels (torch's dirac_ with
 * O / per_group groups; a 2-D eye is in_channels = columns, spatial = 1, center = 0, per_group = rows).
 * Elements first .. first + n - 1; the zeros are written as fl_constant's (streaming alike). */
void fl_diagonal_f32(int64_t first, int64_t n, int64_t in_channels, int64_t spatial, int64_t center,
                     int64_t per_group, float value, int streaming, float *out);
void fl_diagonal_f64(int64_t first, int64_t n, int64_t in_channels, int64_t spatial, int64_t center,
                     int64_t per_group, double value, int streaming, double *out);
void fl_diagonal_u16(int64_t first, int64_t n, int64_t in_channels, int64_t spatial, int64_t center,
                     int64_t per_group, uint16_t value, int streaming, uint16_t *out);

/* positive_unitball's normalisation: each of `rows` rows of `row_len` elements is divided by its sum,
 * summed sequentially in the element type (Caffe's order, so Caffe's bytes).  Rows are summed
 * FL_ROWS_AT_ONCE at a time, side by side: give it at least that many rows to keep the adders busy. */
#define FL_ROWS_AT_ONCE 8
void fl_normalize_rows_f32(float *data, int64_t rows, int64_t row_len);
void fl_normalize_rows_f64(double *data, int64_t rows, int64_t row_len);

#endif
