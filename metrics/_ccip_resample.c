/* Bilinear resize of an RGB image plus the CCIP normalisation lookup, bit-identical to Pillow.
 *
 * Pillow's Image.resize(size, BILINEAR) (Pillow 12.3, src/libImaging/Resample.c) is a separable
 * two-pass convolution in fixed point: per output pixel, triangle-filter weights computed in
 * double and normalised to sum 1, then rounded to integers with 22 fractional bits; each pass
 * sums pixel * weight in int32 starting from half a unit, shifts right by 22 and clamps to
 * 0..255.  The horizontal pass runs first (over the rows the vertical pass reads) and its 8-bit
 * result feeds the vertical pass -- except for images over 100 times taller than wide, which
 * Image.resize shrinks vertically first -- and a pass whose dimension is unchanged is skipped.
 * This file recomputes exactly those integers (integer sums do not depend on the order of the
 * additions, so the SIMD and scalar paths agree on every CPU), then maps each 8-bit value
 * through a per-channel float32 table straight into channels-first planes, with no resized
 * image or numpy copy in between.
 *
 * The speed comes from AVX2 (chosen at run time; a portable scalar path otherwise): the
 * horizontal pass multiplies two neighbouring RGBX pixels by their two weights in one 8-lane
 * instruction, two rows and two output pixels at a time; the vertical pass works on 16
 * contiguous bytes of a row at a time, reading horizontal rows from a small ring that is filled
 * just before they are needed, so the intermediate image never leaves the L1/L2 cache.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define HAVE_X86 1
#include <immintrin.h>
#else
#define HAVE_X86 0
#endif

#define PRECISION_BITS (32 - 8 - 2)
#define HALF (1 << (PRECISION_BITS - 1))

/* Arrow C data interface structs (https://arrow.apache.org/docs/format/CDataInterface.html),
 * through which Pillow lends its pixel memory without a copy. */
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

/* Weights of one pass: for output i, `count[i]` weights starting at input `first[i]`. */
typedef struct {
    int out_size;
    int ksize; /* stride of `weights` per output */
    int *first;
    int *count;
    int32_t *weights;
} Pass;

static void pass_free(Pass *p) { /* safe to call twice */
    free(p->first);
    free(p->count);
    free(p->weights);
    p->first = p->count = NULL;
    p->weights = NULL;
}

static double triangle(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* The weights Pillow derives for a bilinear resize of `in_size` to `out_size` (full box). */
static int pass_init(Pass *p, int in_size, int out_size) {
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *w = malloc(sizeof(double) * ksize);
    p->out_size = out_size;
    p->ksize = ksize;
    p->first = malloc(sizeof(int) * out_size);
    p->count = malloc(sizeof(int) * out_size);
    p->weights = calloc((size_t)out_size * ksize, sizeof(int32_t));
    if (!w || !p->first || !p->count || !p->weights) {
        free(w);
        pass_free(p);
        return -1;
    }
    for (int i = 0; i < out_size; i++) {
        double center = 0.0 + (i + 0.5) * scale;
        double total = 0.0, ss = 1.0 / filterscale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        hi -= lo;
        for (int x = 0; x < hi; x++) {
            w[x] = triangle((x + lo - center + 0.5) * ss);
            total += w[x];
        }
        for (int x = 0; x < hi; x++) {
            double v = total != 0.0 ? w[x] / total : w[x];
            p->weights[(size_t)i * ksize + x] =
                v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                      : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        p->first[i] = lo;
        p->count[i] = hi;
    }
    free(w);
    return 0;
}

static inline uint8_t clip8(int32_t sum) {
    int32_t v = sum >> PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* ---- scalar passes (any CPU) ---- */

/* One RGBX row -> one RGBX row of `h->out_size` pixels. */
static void horizontal_row_scalar(const uint8_t *row, const Pass *h, uint8_t *out) {
    for (int i = 0; i < h->out_size; i++) {
        const int32_t *k = h->weights + (size_t)i * h->ksize;
        const uint8_t *p = row + (size_t)h->first[i] * 4;
        int32_t s0 = HALF, s1 = HALF, s2 = HALF;
        for (int x = 0; x < h->count[i]; x++) {
            s0 += p[x * 4 + 0] * k[x];
            s1 += p[x * 4 + 1] * k[x];
            s2 += p[x * 4 + 2] * k[x];
        }
        out[i * 4 + 0] = clip8(s0);
        out[i * 4 + 1] = clip8(s1);
        out[i * 4 + 2] = clip8(s2);
        out[i * 4 + 3] = 0;
    }
}

/* One output row of the vertical pass: `n` input rows weighted by `k`, `width` RGBX pixels. */
static void vertical_row_scalar(const uint8_t *const *rows, int n, const int32_t *k, int width,
                                uint8_t *dst) {
    for (int x = 0; x < width * 4; x++) {
        int32_t s = HALF;
        for (int y = 0; y < n; y++) s += rows[y][x] * k[y];
        dst[x] = clip8(s);
    }
}

#if HAVE_X86
/* Per output pixel of the horizontal pass: weights for pairs of neighbouring input pixels,
 * laid out as 8 lanes (RGBX of pixel j, RGBX of pixel j+1), and where the pairs start.  An odd
 * count gets a zero weight on one side; the window moves left at the right edge so a pair never
 * reads past the row.  Returns -1 when some window cannot fit (the scalar path is used). */
typedef struct {
    int pairs; /* pairs per output pixel (the widest window) */
    int *start;
    int32_t *lanes; /* [out_size][pairs][8] */
} PairWeights;

static int pairs_init(PairWeights *pw, const Pass *h, int in_size) {
    int widest = 0;
    for (int i = 0; i < h->out_size; i++)
        if (h->count[i] > widest) widest = h->count[i];
    pw->pairs = (widest + 1) / 2;
    pw->start = malloc(sizeof(int) * h->out_size);
    pw->lanes = aligned_alloc(32, ((size_t)h->out_size * pw->pairs * 8 * sizeof(int32_t) + 31)
                                      / 32 * 32);
    if (!pw->start || !pw->lanes) return -2;
    memset(pw->lanes, 0, (size_t)h->out_size * pw->pairs * 8 * sizeof(int32_t));
    for (int i = 0; i < h->out_size; i++) {
        int span = 2 * pw->pairs, start = h->first[i];
        if (start + span > in_size) start = in_size - span;
        if (start < 0) return -1;
        pw->start[i] = start;
        const int32_t *k = h->weights + (size_t)i * h->ksize;
        int32_t *lanes = pw->lanes + (size_t)i * pw->pairs * 8;
        for (int x = 0; x < h->count[i]; x++) {
            int tap = h->first[i] + x - start; /* position inside the window */
            for (int c = 0; c < 4; c++) lanes[(tap / 2) * 8 + (tap % 2) * 4 + c] = k[x];
        }
    }
    return 0;
}

static void pairs_free(PairWeights *pw) {
    free(pw->start);
    free(pw->lanes);
}

/* One output pixel of one row: 4 lanes per pixel, the two halves summed (HALF is in one). */
__attribute__((target("avx2"), always_inline)) static inline __m256i
horizontal_sum(const uint8_t *p, const __m256i *k, int pairs) {
    __m256i acc = _mm256_setr_epi32(HALF, HALF, HALF, HALF, 0, 0, 0, 0);
    for (int q = 0; q < pairs; q++) {
        __m256i px = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8 * q)));
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(px, _mm256_load_si256(k + q)));
    }
    return acc;
}

/* Two rows (`r1` may be NULL) by two output pixels at a time, sharing the weight loads;
 * `pairs` is a constant in each instantiation so the tap loop unrolls.  The X byte of the
 * result is left unspecified: nothing reads it. */
__attribute__((target("avx2"), always_inline)) static inline void
horizontal_avx2_body(const uint8_t *r0, const uint8_t *r1, uint8_t *o0, uint8_t *o1,
                     const Pass *h, const PairWeights *pw, int pairs) {
    int out_w = h->out_size, rows = r1 ? 2 : 1;
    if (!r1) r1 = r0; /* computed and dropped */
    int i = 0;
    for (; i + 1 < out_w; i += 2) {
        const __m256i *ka = (const __m256i *)(pw->lanes + (size_t)i * pairs * 8);
        const __m256i *kb = ka + pairs;
        size_t sa = (size_t)pw->start[i] * 4, sb = (size_t)pw->start[i + 1] * 4;
        __m256i a0 = horizontal_sum(r0 + sa, ka, pairs);
        __m256i a1 = horizontal_sum(r1 + sa, ka, pairs);
        __m256i b0 = horizontal_sum(r0 + sb, kb, pairs);
        __m256i b1 = horizontal_sum(r1 + sb, kb, pairs);
        /* [row 0 | row 1] sums of pixel i, then of pixel i + 1 */
        __m256i a = _mm256_add_epi32(_mm256_permute2x128_si256(a0, a1, 0x20),
                                     _mm256_permute2x128_si256(a0, a1, 0x31));
        __m256i b = _mm256_add_epi32(_mm256_permute2x128_si256(b0, b1, 0x20),
                                     _mm256_permute2x128_si256(b0, b1, 0x31));
        a = _mm256_srai_epi32(a, PRECISION_BITS);
        b = _mm256_srai_epi32(b, PRECISION_BITS);
        __m256i w = _mm256_packus_epi32(a, b); /* negative -> 0 */
        w = _mm256_packus_epi16(w, w);         /* > 255 -> 255 */
        _mm_storel_epi64((__m128i *)(o0 + (size_t)i * 4), _mm256_castsi256_si128(w));
        if (rows == 2)
            _mm_storel_epi64((__m128i *)(o1 + (size_t)i * 4), _mm256_extracti128_si256(w, 1));
    }
    for (; i < out_w; i++) {
        const __m256i *k = (const __m256i *)(pw->lanes + (size_t)i * pairs * 8);
        size_t s = (size_t)pw->start[i] * 4;
        for (int r = 0; r < rows; r++) {
            __m256i acc = horizontal_sum((r ? r1 : r0) + s, k, pairs);
            __m128i v = _mm_add_epi32(_mm256_castsi256_si128(acc),
                                      _mm256_extracti128_si256(acc, 1));
            v = _mm_srai_epi32(v, PRECISION_BITS);
            v = _mm_packus_epi16(_mm_packus_epi32(v, v), v);
            uint32_t px = (uint32_t)_mm_cvtsi128_si32(v);
            memcpy((r ? o1 : o0) + (size_t)i * 4, &px, 4);
        }
    }
}

__attribute__((target("avx2"))) static void horizontal_avx2(const uint8_t *r0, const uint8_t *r1,
                                                            uint8_t *o0, uint8_t *o1,
                                                            const Pass *h,
                                                            const PairWeights *pw) {
    switch (pw->pairs) { /* the common window widths get unrolled copies */
    case 1: horizontal_avx2_body(r0, r1, o0, o1, h, pw, 1); break;
    case 2: horizontal_avx2_body(r0, r1, o0, o1, h, pw, 2); break;
    case 3: horizontal_avx2_body(r0, r1, o0, o1, h, pw, 3); break;
    case 4: horizontal_avx2_body(r0, r1, o0, o1, h, pw, 4); break;
    default: horizontal_avx2_body(r0, r1, o0, o1, h, pw, pw->pairs); break;
    }
}

__attribute__((target("avx2"))) static void vertical_row_avx2(const uint8_t *const *rows, int n,
                                                              const int32_t *k, int width,
                                                              uint8_t *dst) {
    int bytes = width * 4, x = 0;
    for (; x + 16 <= bytes; x += 16) {
        __m256i a = _mm256_set1_epi32(HALF), b = a;
        for (int y = 0; y < n; y++) {
            const uint8_t *p = rows[y] + x;
            __m256i w = _mm256_set1_epi32(k[y]);
            a = _mm256_add_epi32(
                a, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)), w));
            b = _mm256_add_epi32(
                b, _mm256_mullo_epi32(
                       _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8))), w));
        }
        a = _mm256_srai_epi32(a, PRECISION_BITS);
        b = _mm256_srai_epi32(b, PRECISION_BITS);
        __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
        __m128i bytes16 = _mm_packus_epi16(_mm256_castsi256_si128(words),
                                           _mm256_extracti128_si256(words, 1));
        _mm_storeu_si128((__m128i *)(dst + x), bytes16);
    }
    for (; x < bytes; x++) {
        int32_t s = HALF;
        for (int y = 0; y < n; y++) s += rows[y][x] * k[y];
        dst[x] = clip8(s);
    }
}
#endif

static int use_simd = -1; /* -1: not decided yet; tests can force the scalar path */

static int simd_available(void) {
#if HAVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

/* RGBX 8-bit row -> three float32 planes through the per-channel table. */
static void lookup_row(const uint8_t *rgbx, int width, const float *lut, float *r, float *g,
                       float *b) {
    for (int x = 0; x < width; x++) {
        r[x] = lut[rgbx[4 * x + 0]];
        g[x] = lut[256 + rgbx[4 * x + 1]];
        b[x] = lut[512 + rgbx[4 * x + 2]];
    }
}

/* The horizontal pass, prepared once per image. */
typedef struct {
    const Pass *pass;
    int simd; /* AVX2 allowed and every pair window fits */
#if HAVE_X86
    PairWeights pw;
#endif
} Horizontal;

static int horizontal_init(Horizontal *hz, const Pass *h, int in_w, int simd) {
    hz->pass = h;
    hz->simd = 0;
#if HAVE_X86
    memset(&hz->pw, 0, sizeof(hz->pw));
    if (simd) {
        int r = pairs_init(&hz->pw, h, in_w);
        if (r == -2) return -1;
        hz->simd = r == 0;
    }
#endif
    return 0;
}

static void horizontal_free(Horizontal *hz) {
#if HAVE_X86
    pairs_free(&hz->pw);
#endif
}

/* Rows `r0` and `r1` (NULL: only `r0`) into `o0` and `o1`. */
static void horizontal_rows(const Horizontal *hz, const uint8_t *r0, const uint8_t *r1,
                            uint8_t *o0, uint8_t *o1) {
#if HAVE_X86
    if (hz->simd) {
        horizontal_avx2(r0, r1, o0, o1, hz->pass, &hz->pw);
        return;
    }
#endif
    horizontal_row_scalar(r0, hz->pass, o0);
    if (r1) horizontal_row_scalar(r1, hz->pass, o1);
}

static void vertical_row(const uint8_t *const *rows, const Pass *v, int i, int width, int simd,
                         uint8_t *dst) {
    const int32_t *k = v->weights + (size_t)i * v->ksize;
#if HAVE_X86
    if (simd) {
        vertical_row_avx2(rows, v->count[i], k, width, dst);
        return;
    }
#endif
    vertical_row_scalar(rows, v->count[i], k, width, dst);
}

/* Where the input rows come from: a Pillow RGBX image, or the inflated scanlines of an 8-bit
 * RGB PNG (a filter-type byte, then 3 bytes a pixel), unfiltered on demand into a ring of RGBX
 * rows -- the same pixels Pillow's PNG decoder would store, without the full image in memory. */
typedef struct {
    const uint8_t *image; /* RGBX rows of `stride` bytes, or NULL for PNG scanlines */
    size_t stride;
    const uint8_t *png;
    int width, next; /* PNG: the next row to unfilter */
    int ring_rows;
    uint8_t *ring; /* ring_rows RGBX rows (the newest ones) */
    uint8_t *zeros; /* one RGBX row of zeros: the row above the first */
    int simd;
} Source;

static inline int paeth(int a, int b, int c) {
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* One PNG scanline (its filter type 0-4, checked by the caller, then packed RGB) -> RGBX `out`,
 * given the previous row's RGBX `up` (NULL for the first row, which PNG reads as zeros). */
static void unfilter_row(const uint8_t *line, int width, const uint8_t *up, uint8_t *out,
                         uint8_t *zeros) {
    int filter = line[0];
    const uint8_t *in = line + 1;
    if (!up) up = zeros; /* width * 4 zero bytes */
    if (filter == 1 || filter == 3 || filter == 4) {
        /* the first pixel has no left neighbour: Sub adds 0, Avg adds up / 2, Paeth adds up */
        for (int c = 0; c < 3; c++)
            out[c] = (uint8_t)(in[c] + (filter == 1 ? 0 : filter == 3 ? up[c] >> 1 : up[c]));
        out[3] = 255;
    }
    int x0 = filter == 1 || filter == 3 || filter == 4;
    switch (filter) {
    case 0:
        for (int x = 0; x < width; x++) {
            out[4 * x] = in[3 * x];
            out[4 * x + 1] = in[3 * x + 1];
            out[4 * x + 2] = in[3 * x + 2];
            out[4 * x + 3] = 255;
        }
        break;
    case 1:
        for (int x = x0; x < width; x++) {
            for (int c = 0; c < 3; c++) out[4 * x + c] = (uint8_t)(in[3 * x + c] + out[4 * x - 4 + c]);
            out[4 * x + 3] = 255;
        }
        break;
    case 2:
        for (int x = 0; x < width; x++) {
            for (int c = 0; c < 3; c++) out[4 * x + c] = (uint8_t)(in[3 * x + c] + up[4 * x + c]);
            out[4 * x + 3] = 255;
        }
        break;
    case 3:
        for (int x = x0; x < width; x++) {
            for (int c = 0; c < 3; c++)
                out[4 * x + c] = (uint8_t)(in[3 * x + c] + ((out[4 * x - 4 + c] + up[4 * x + c]) >> 1));
            out[4 * x + 3] = 255;
        }
        break;
    default:
        for (int x = x0; x < width; x++) {
            for (int c = 0; c < 3; c++)
                out[4 * x + c] = (uint8_t)(in[3 * x + c] + paeth(out[4 * x - 4 + c], up[4 * x + c],
                                                                 up[4 * x - 4 + c]));
            out[4 * x + 3] = 255;
        }
        break;
    }
}

#if HAVE_X86
/* Pixel x of a packed RGB scanline as RGBX with X = 0 (the last one read byte by byte). */
static inline uint32_t packed_pixel(const uint8_t *in, int x, int width) {
    const uint8_t *p = in + 3 * x;
    if (x + 1 < width) {
        uint32_t v;
        memcpy(&v, p, 4); /* a constant size: one load, no byte loop through the stack */
        return v & 0x00FFFFFFu;
    }
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

/* unfilter_row with whole pixels in registers: None and Up four pixels per step, Sub and
 * Average as four byte lanes in a 32-bit word, Paeth on 16-bit lanes; the same bytes. */
__attribute__((target("avx2"))) static void unfilter_row_simd(const uint8_t *line, int width,
                                                             const uint8_t *up, uint8_t *out,
                                                             uint8_t *zeros) {
    int filter = line[0];
    const uint8_t *in = line + 1;
    const uint32_t alpha = 0xFF000000u;
    if (!up) up = zeros;
    int x = 0;
    if (filter == 0 || filter == 2) {
        const __m128i spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
        const __m128i opaque = _mm_set1_epi32((int)alpha);
        for (; 3 * x + 16 <= 3 * width; x += 4) { /* 16 bytes read, 12 used */
            __m128i v = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(in + 3 * x)), spread);
            if (filter == 2) v = _mm_add_epi8(v, _mm_loadu_si128((const __m128i *)(up + 4 * x)));
            _mm_storeu_si128((__m128i *)(out + 4 * x), _mm_or_si128(v, opaque));
        }
        for (; x < width; x++) {
            uint32_t v = packed_pixel(in, x, width), u;
            memcpy(&u, up + 4 * x, 4);
            if (filter == 2) /* bytewise v + u, no carry between bytes */
                v = ((v & 0x7F7F7F7Fu) + (u & 0x7F7F7F7Fu)) ^ ((v ^ u) & 0x80808080u);
            v = (v & 0x00FFFFFFu) | alpha;
            memcpy(out + 4 * x, &v, 4);
        }
        return;
    }
    if (filter == 1 || filter == 3) {
        uint32_t left = 0;
        for (; x < width; x++) {
            uint32_t v = packed_pixel(in, x, width), u, predicted = left;
            memcpy(&u, up + 4 * x, 4);
            u &= 0x00FFFFFFu;
            if (filter == 3) /* bytewise floor((left + up) / 2) */
                predicted = (left & u) + (((left ^ u) & 0xFEFEFEFEu) >> 1);
            left = (((v & 0x7F7F7F7Fu) + (predicted & 0x7F7F7F7Fu)) ^ ((v ^ predicted) & 0x80808080u))
                   & 0x00FFFFFFu;
            uint32_t px = left | alpha;
            memcpy(out + 4 * x, &px, 4);
        }
        return;
    }
    /* Paeth: a = left, b = up, c = up-left, as 16-bit lanes; a pixel's result is the next a. */
    const __m128i low_byte = _mm_set1_epi16(0xFF);
    __m128i a = _mm_setzero_si128(), c = _mm_setzero_si128();
    for (; x < width; x++) {
        uint32_t raw = packed_pixel(in, x, width), above;
        memcpy(&above, up + 4 * x, 4);
        __m128i b = _mm_cvtepu8_epi16(_mm_cvtsi32_si128((int)above));
        __m128i bc = _mm_sub_epi16(b, c), ac = _mm_sub_epi16(a, c);
        __m128i pa = _mm_abs_epi16(bc), pb = _mm_abs_epi16(ac);
        __m128i pc = _mm_abs_epi16(_mm_add_epi16(ac, bc));
        __m128i not_a = _mm_or_si128(_mm_cmpgt_epi16(pa, pb), _mm_cmpgt_epi16(pa, pc));
        __m128i b_or_c = _mm_blendv_epi8(b, c, _mm_cmpgt_epi16(pb, pc));
        __m128i predicted = _mm_blendv_epi8(a, b_or_c, not_a);
        a = _mm_and_si128(
            _mm_add_epi16(_mm_cvtepu8_epi16(_mm_cvtsi32_si128((int)raw)), predicted), low_byte);
        uint32_t px = ((uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(a, a)) & 0x00FFFFFFu) | alpha;
        memcpy(out + 4 * x, &px, 4);
        c = b;
    }
}
#endif

/* Input row `y` as RGBX.  PNG rows are made in order and kept in the ring, so `y` must be
 * newer than the ring's oldest row (the passes below never reach further back). */
static const uint8_t *source_row(Source *s, int y) {
    if (s->image) return s->image + (size_t)y * s->stride;
    size_t rgbx = (size_t)s->width * 4, line = (size_t)s->width * 3 + 1;
    for (; s->next <= y; s->next++) {
        int n = s->next;
        const uint8_t *up = n ? s->ring + (size_t)((n - 1) % s->ring_rows) * rgbx : NULL;
        uint8_t *out = s->ring + (size_t)(n % s->ring_rows) * rgbx;
#if HAVE_X86
        if (s->simd) {
            unfilter_row_simd(s->png + (size_t)n * line, s->width, up, out, s->zeros);
            continue;
        }
#endif
        unfilter_row(s->png + (size_t)n * line, s->width, up, out, s->zeros);
    }
    return s->ring + (size_t)(y % s->ring_rows) * rgbx;
}

/* The whole resize + lookup; returns 0, or -1 when out of memory.
 *
 * Pass order as in Pillow 12.3: horizontal first, except that Image.resize runs the vertical
 * pass first (as a separate resize) for an image more than 100 times taller than wide whose
 * height shrinks.  Horizontal-first rows are made just before the vertical pass reads them,
 * into a ring of a few rows that stays in the L1 cache. */
static int resample(Source *src, int in_w, int in_h, int out_w, int out_h, const float *lut,
                    float *out, int simd) {
    Pass h = {0}, v = {0};
    Horizontal hz = {0};
    uint8_t *tmp = NULL, *row = NULL;
    const uint8_t **window = NULL;
    int status = -1;
    if (pass_init(&h, in_w, out_w) || pass_init(&v, in_h, out_h)) goto done;
    if (horizontal_init(&hz, &h, in_w, simd)) goto done;
    int need_h = out_w != in_w, need_v = out_h != in_h;
    size_t plane = (size_t)out_w * out_h, src_stride = (size_t)in_w * 4;
    size_t out_stride = (size_t)out_w * 4;
    row = malloc(out_stride + 16);
    window = malloc(sizeof(*window) * v.ksize);
    if (!row || !window) goto done;
    if (!src->image) { /* a vertical window plus the row being made and the one above it */
        src->ring_rows = v.ksize + 2;
        src->ring = malloc((size_t)src->ring_rows * src_stride + 16);
        src->zeros = calloc(src_stride + 16, 1);
        src->simd = simd;
        if (!src->ring || !src->zeros) goto done;
    }
    if ((long long)in_h > (long long)in_w * 100 && out_h < in_h) {
        tmp = malloc((size_t)out_h * src_stride + 16);
        if (!tmp) goto done;
        for (int i = 0; i < out_h; i++) {
            for (int y = 0; y < v.count[i]; y++)
                window[y] = source_row(src, v.first[i] + y);
            vertical_row(window, &v, i, in_w, simd, tmp + i * src_stride);
        }
        for (int i = 0; i < out_h; i++) {
            const uint8_t *rgbx = tmp + i * src_stride;
            if (need_h) {
                horizontal_rows(&hz, rgbx, NULL, row, NULL);
                rgbx = row;
            }
            float *r = out + (size_t)i * out_w;
            lookup_row(rgbx, out_w, lut, r, r + plane, r + 2 * plane);
        }
        status = 0;
        goto done;
    }
    /* Row y of the horizontal result lives in ring slot y % ring; rows are made two at a time,
     * so the ring holds the widest window plus one row made ahead. */
    int ring = v.ksize + 2;
    int made = v.first[0]; /* the rows before it are never read */
    int last = v.first[out_h - 1] + v.count[out_h - 1];
    if (need_h) {
        tmp = malloc((size_t)ring * out_stride + 16);
        if (!tmp) goto done;
    }
    for (int i = 0; i < out_h; i++) {
        int end = v.first[i] + v.count[i];
        for (; need_h && made < end; made += 2) {
            int two = made + 1 < last;
            const uint8_t *r0 = source_row(src, made);
            horizontal_rows(&hz, r0, two ? source_row(src, made + 1) : NULL,
                            tmp + (size_t)(made % ring) * out_stride,
                            two ? tmp + (size_t)((made + 1) % ring) * out_stride : NULL);
        }
        for (int y = 0; y < v.count[i]; y++) {
            int at = v.first[i] + y;
            window[y] = need_h ? tmp + (size_t)(at % ring) * out_stride : source_row(src, at);
        }
        const uint8_t *rgbx = window[0]; /* an unchanged height reads row i itself */
        if (need_v) {
            vertical_row(window, &v, i, out_w, simd, row);
            rgbx = row;
        }
        float *r = out + (size_t)i * out_w;
        lookup_row(rgbx, out_w, lut, r, r + plane, r + 2 * plane);
    }
    status = 0;
done:
    if (!src->image) {
        free(src->ring);
        free(src->zeros);
        src->ring = src->zeros = NULL;
    }
    free(window);
    free(row);
    free(tmp);
    horizontal_free(&hz);
    pass_free(&h);
    pass_free(&v);
    return status;
}

/* Pixel memory of a Pillow RGB image exported through the Arrow C data interface. */
static const uint8_t *arrow_pixels(PyObject *pair, Py_ssize_t pixels) {
    PyObject *schema_cap, *array_cap;
    if (!PyArg_ParseTuple(pair, "OO", &schema_cap, &array_cap)) return NULL;
    struct ArrowSchema *schema = PyCapsule_GetPointer(schema_cap, "arrow_schema");
    if (!schema) return NULL;
    struct ArrowArray *array = PyCapsule_GetPointer(array_cap, "arrow_array");
    if (!array) return NULL;
    if (strcmp(schema->format, "+w:4") != 0 || schema->n_children != 1 ||
        strcmp(schema->children[0]->format, "C") != 0 || array->n_children != 1 ||
        array->length != pixels || array->null_count != 0 ||
        array->children[0]->n_buffers != 2 || array->children[0]->null_count != 0 ||
        array->children[0]->buffers[1] == NULL) {
        PyErr_SetString(PyExc_ValueError, "expected an RGB image's 4-byte pixels");
        return NULL;
    }
    const struct ArrowArray *child = array->children[0];
    return (const uint8_t *)child->buffers[1] + child->offset + array->offset * 4;
}

/* The table and output arguments, checked; 0, or -1 with an exception set (both released). */
static int lut_and_out(PyObject *lut_obj, PyObject *out_obj, Py_buffer *lut, Py_buffer *out) {
    if (PyObject_GetBuffer(lut_obj, lut, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (PyObject_GetBuffer(out_obj, out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) <
        0) {
        PyBuffer_Release(lut);
        return -1;
    }
    const char *problem = NULL;
    if (lut->len != 3 * 256 * 4 || strcmp(lut->format, "f") != 0)
        problem = "lut: expected float32 [3, 256]";
    else if (out->ndim != 3 || out->shape[0] != 3 || strcmp(out->format, "f") != 0 ||
             out->shape[1] < 1 || out->shape[2] < 1 || out->shape[1] > INT32_MAX / 4 ||
             out->shape[2] > INT32_MAX / 4)
        problem = "out: expected float32 [3, height, width]";
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        PyBuffer_Release(out);
        PyBuffer_Release(lut);
        return -1;
    }
    return 0;
}

/* Resample `src` into `out` without the GIL; 0, or -1 with MemoryError set. */
static int run(Source *src, int in_w, int in_h, Py_buffer *lut, Py_buffer *out) {
    if (use_simd < 0) use_simd = simd_available();
    int status, simd = use_simd;
    int out_h = (int)out->shape[1], out_w = (int)out->shape[2];
    Py_BEGIN_ALLOW_THREADS
    status = resample(src, in_w, in_h, out_w, out_h, lut->buf, out->buf, simd);
    Py_END_ALLOW_THREADS
    if (status) PyErr_NoMemory();
    return status;
}

static PyObject *py_resample(PyObject *self, PyObject *args) {
    PyObject *source, *lut_obj, *out_obj;
    int in_w, in_h;
    if (!PyArg_ParseTuple(args, "OiiOO", &source, &in_w, &in_h, &lut_obj, &out_obj)) return NULL;
    if (in_w < 1 || in_h < 1) {
        PyErr_SetString(PyExc_ValueError, "image size must be positive");
        return NULL;
    }
    Py_buffer lut = {0}, out = {0}, raw = {0};
    PyObject *result = NULL;
    uint8_t *expanded = NULL;
    if (lut_and_out(lut_obj, out_obj, &lut, &out)) return NULL;
    Py_ssize_t pixels = (Py_ssize_t)in_w * in_h;
    Source src = {0};
    src.stride = (size_t)in_w * 4;
    if (PyTuple_Check(source)) {
        src.image = arrow_pixels(source, pixels);
        if (!src.image) goto done;
    } else {
        /* Packed RGB bytes (e.g. numpy's copy of an image too large for one Pillow block). */
        if (PyObject_GetBuffer(source, &raw, PyBUF_C_CONTIGUOUS) < 0) goto done;
        if (raw.len != pixels * 3) {
            PyErr_SetString(PyExc_ValueError, "pixels: expected height * width * 3 bytes");
            goto done;
        }
        expanded = malloc((size_t)pixels * 4);
        if (!expanded) {
            PyErr_NoMemory();
            goto done;
        }
        const uint8_t *rgb = raw.buf;
        for (Py_ssize_t j = 0; j < pixels; j++) {
            memcpy(expanded + 4 * j, rgb + 3 * j, 3);
            expanded[4 * j + 3] = 0;
        }
        src.image = expanded;
    }
    if (run(&src, in_w, in_h, &lut, &out) == 0) {
        result = Py_None;
        Py_INCREF(result);
    }
done:
    free(expanded);
    if (raw.obj) PyBuffer_Release(&raw);
    PyBuffer_Release(&out);
    PyBuffer_Release(&lut);
    return result;
}

static PyObject *py_resample_png(PyObject *self, PyObject *args) {
    PyObject *lut_obj, *out_obj;
    Py_buffer lines = {0}, lut = {0}, out = {0};
    int in_w, in_h;
    if (!PyArg_ParseTuple(args, "y*iiOO", &lines, &in_w, &in_h, &lut_obj, &out_obj)) return NULL;
    PyObject *result = NULL;
    size_t line = (size_t)in_w * 3 + 1;
    if (in_w < 1 || in_h < 1 || in_w > INT32_MAX / 4) {
        PyErr_SetString(PyExc_ValueError, "image size must be positive");
        goto release;
    }
    if ((size_t)lines.len != line * (size_t)in_h) {
        PyErr_SetString(PyExc_ValueError, "scanlines: expected height * (3 * width + 1) bytes");
        goto release;
    }
    const uint8_t *png = lines.buf;
    for (int y = 0; y < in_h; y++) {
        if (png[(size_t)y * line] > 4) {
            PyErr_Format(PyExc_ValueError, "scanline %d: unknown PNG filter type %d", y,
                         png[(size_t)y * line]);
            goto release;
        }
    }
    if (lut_and_out(lut_obj, out_obj, &lut, &out)) goto release;
    Source src = {0};
    src.stride = (size_t)in_w * 4;
    src.png = png;
    src.width = in_w;
    if (run(&src, in_w, in_h, &lut, &out) == 0) {
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&lut);
release:
    PyBuffer_Release(&lines);
    return result;
}

static PyObject *py_set_simd(PyObject *self, PyObject *arg) {
    int wanted = PyObject_IsTrue(arg);
    if (wanted < 0) return NULL;
    int previous = use_simd < 0 ? simd_available() : use_simd;
    use_simd = wanted && simd_available();
    return PyBool_FromLong(previous);
}

static PyObject *py_simd_available(PyObject *self, PyObject *unused) {
    return PyBool_FromLong(simd_available());
}

static PyMethodDef methods[] = {
    {"resample_rgb", py_resample, METH_VARARGS,
     "resample_rgb(source, width, height, lut, out)\n\n"
     "Bilinear-resize an RGB image of width x height to out's [3, H, W] float32 planes, each "
     "8-bit value mapped through lut[channel]; bit-identical to Pillow's resize(BILINEAR). "
     "source: the image's __arrow_c_array__() pair, or packed RGB bytes."},
    {"resample_png", py_resample_png, METH_VARARGS,
     "resample_png(scanlines, width, height, lut, out)\n\n"
     "As resample_rgb, from the inflated image data of an 8-bit RGB, non-interlaced PNG (per "
     "row a filter type 0-4, then 3 bytes a pixel), unfiltered row by row as it is read: the "
     "pixels Pillow's PNG decoder stores.  ValueError for a wrong length or filter type."},
    {"set_simd", py_set_simd, METH_O,
     "set_simd(enabled) -> previous: use AVX2 when available (default) or the scalar path."},
    {"simd_available", py_simd_available, METH_NOARGS, "Whether this CPU has AVX2."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ccip_resample", "Pillow-exact bilinear resize for CCIP inputs.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__ccip_resample(void) { return PyModule_Create(&module); }
