/*
 * mt_nn_vec.h: what the host-only vector kernels share (x86-64 with AVX2; internal, static
 * inline, included by mt_nn_pw_vec.h and mt_nn_dw_vec.h when mt_nn.h sets MT_NN_VEC).
 *
 * The vector kernels compute the integers of their portable twins: int8 products summed in
 * int16 pairs by VPMADDWD (|x w| <= 2^14, so a pair sum <= 2^15 fits its int32 lane) and
 * then in int32 lanes, exact sums whatever the order (every partial sum fits int32,
 * MT_NN_MAX_DOT_LENGTH); the output store is the fast store of mt_nn_fast.h on eight lanes.
 * Channels whose constants do not qualify for the fast store take the reference store
 * (mt_nn_store_s8) on the exact sum, as in the portable path.
 */
#ifndef MT_NN_VEC_H
#define MT_NN_VEC_H

#include <immintrin.h>

#include "mt_nn_fast.h"

/* The eight lanes' fast-store constants (mt_nn_fast_store), one channel per lane. */
typedef struct {
    __m256i bias2, multiplier, round, right;
} mt_nn_vec_store;

/* mt_nn_smmulr on eight lanes: (a b + 2^31) >> 32 per int32 lane. VPMULDQ multiplies the even
 * lanes (sign-extended) into int64; the odd lanes are shifted down to the even places first;
 * the high halves of the rounded int64 products are the results. */
static inline __m256i mt_nn_vec_smmulr(__m256i a, __m256i b)
{
    const __m256i half = _mm256_set1_epi64x((int64_t)1 << 31);
    const __m256i even = _mm256_add_epi64(_mm256_mul_epi32(a, b), half);
    const __m256i odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)), half);
    return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* mt_nn_fast_out on eight lanes: requantize the raw sums, add the output zero point, clamp
 * to [lo, hi] (int32 lanes holding int8 values). */
static inline __m256i mt_nn_vec_fast_out(__m256i raw, const mt_nn_vec_store *f, __m256i zo, __m256i lo, __m256i hi)
{
    const __m256i h = mt_nn_vec_smmulr(_mm256_add_epi32(f->bias2, _mm256_slli_epi32(raw, 1)), f->multiplier);
    const __m256i r = _mm256_srav_epi32(_mm256_add_epi32(_mm256_add_epi32(h, f->round), _mm256_srai_epi32(h, 31)),
                                        f->right);
    return _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, zo), lo), hi);
}

/* The same constants in all eight lanes (one channel). */
static inline mt_nn_vec_store mt_nn_vec_store_dup(const mt_nn_fast_store *f)
{
    mt_nn_vec_store v;
    v.bias2 = _mm256_set1_epi32(f->bias2);
    v.multiplier = _mm256_set1_epi32(f->multiplier);
    v.round = _mm256_set1_epi32(f->round);
    v.right = _mm256_set1_epi32(f->right);
    return v;
}

/* Lanes from arrays of eight constants. */
static inline mt_nn_vec_store mt_nn_vec_store_load(const int32_t b2[8], const int32_t m[8], const int32_t rd[8],
                                                   const int32_t rt[8])
{
    mt_nn_vec_store v;
    v.bias2 = _mm256_loadu_si256((const __m256i *)(const void *)b2);
    v.multiplier = _mm256_loadu_si256((const __m256i *)(const void *)m);
    v.round = _mm256_loadu_si256((const __m256i *)(const void *)rd);
    v.right = _mm256_loadu_si256((const __m256i *)(const void *)rt);
    return v;
}

/* 16 int8 at p as 16 int16 lanes. */
static inline __m256i mt_nn_vec_load16_s8(const int8_t *p)
{
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)p));
}

#endif /* MT_NN_VEC_H */
