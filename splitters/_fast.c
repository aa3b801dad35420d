/* Hot loops of aunet, in C: optional, each has a numpy/Python equivalent.
 *
 * scan(): one pass over a batch of documents for the regex splitter family.
 *
 * This is the same state machine as splitters.regex_family.RegexStreamer (the
 * readable reference), run over many documents at once at C speed. For every
 * byte it writes flags:
 *   1 = word end, 2 = end of an even word of its chain (pairs), 4 = of every 4th
 *   word (quads), 8 = pooled at every stage (digit/other group start, newline run).
 * Flags sit on the last byte of a character; bytes of a character that is not
 * complete yet (or never completes) get none.
 *
 * official != 0 reproduces the official implementation's look-ahead: a newline
 * run that starts with a space/tab is pooled at its first character instead of
 * its first CR/LF.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { OTHER = 0, LETTER = 1, DIGIT = 2, SPACE = 3, NEWLINE = 4 };
enum { F_WORD = 1, F_PAIR = 2, F_QUAD = 4, F_SPECIAL = 8 };

typedef struct {
    int at_start, prev_space, chain_open, word_continues;
    unsigned long chain_rank;
    int run_cls, run_len, swallow_newlines, newline_pooled;
    Py_ssize_t run_first_free; /* official: last byte of the run's first unswallowed char */
} State;

static void reset(State *s) {
    memset(s, 0, sizeof *s);
    s->at_start = 1;
    s->run_cls = -1;
    s->run_first_free = -1;
}

/* Process one character ending at byte `end`; `emit` = 0 for undecided bytes. */
static inline __attribute__((always_inline)) void on_char(State *restrict s, int cls, Py_ssize_t end,
                                                          int emit, int official,
                                                          uint8_t *restrict out) {
    uint8_t flags = 0;
    if (cls >= SPACE) {
        if (!s->prev_space && !s->at_start) {
            s->chain_rank = s->word_continues ? s->chain_rank + 1 : 1;
            flags |= F_WORD;
            if ((s->chain_rank & 1) == 0) flags |= F_PAIR;
            if ((s->chain_rank & 3) == 0) flags |= F_QUAD;
            s->chain_open = 1;
        } else {
            s->chain_open = 0;
        }
        if (s->at_start || !s->prev_space) s->run_first_free = -1;
        if (cls == NEWLINE) {
            if (!s->swallow_newlines && !s->newline_pooled) {
                s->newline_pooled = 1;
                if (official && s->run_first_free >= 0) {
                    out[s->run_first_free] |= F_SPECIAL;
                } else {
                    flags |= F_SPECIAL;
                }
            }
        } else {
            s->swallow_newlines = 0;
        }
        if (s->run_first_free < 0 && !s->swallow_newlines) s->run_first_free = end;
        s->run_cls = -1;
        s->prev_space = 1;
    } else {
        if (s->prev_space || s->at_start) s->word_continues = s->chain_open;
        s->prev_space = 0;
        s->newline_pooled = 0;
        if (cls == LETTER) {
            s->run_cls = -1;
            s->swallow_newlines = 0;
        } else {
            if (s->run_cls == cls && s->run_len < 3) {
                s->run_len++;
            } else {
                s->run_cls = cls;
                s->run_len = 1;
                flags |= F_SPECIAL;
            }
            s->swallow_newlines = (cls == OTHER);
        }
    }
    s->at_start = 0;
    if (emit) out[end] = flags; /* official mode may add F_SPECIAL to an earlier byte */
}

/* The first byte at or after i that is not an ASCII letter (stops before hi). With
 * `simd`, ASCII letters must be exactly A-Z and a-z in `table` (see ascii_letters_ok). */
static inline Py_ssize_t skip_ascii_letters(const uint8_t *restrict d, Py_ssize_t i, Py_ssize_t hi,
                                            const uint8_t *restrict table, int simd) {
#ifdef __SSE2__
    if (simd) {
        const __m128i case_bit = _mm_set1_epi8(0x20), below_a = _mm_set1_epi8('a' - 1),
                      above_z = _mm_set1_epi8('z' + 1);
        for (; i + 16 <= hi; i += 16) {
            /* x | 0x20 in 'a'..'z' (signed compare: bytes >= 0x80 are negative, never in) */
            __m128i x = _mm_or_si128(_mm_loadu_si128((const __m128i *)(d + i)), case_bit);
            __m128i in = _mm_and_si128(_mm_cmpgt_epi8(x, below_a), _mm_cmplt_epi8(x, above_z));
            int letters = _mm_movemask_epi8(in);
            if (letters != 0xFFFF) return i + __builtin_ctz(~letters);
        }
    }
#else
    (void)simd;
#endif
    while (i < hi && d[i] < 0x80 && table[d[i]] == LETTER) i++;
    return i;
}

static int ascii_letters_ok(const uint8_t *table) {
    for (int b = 0; b < 0x80; b++)
        if ((table[b] == LETTER) != ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z'))) return 0;
    return 1;
}

/* The UTF-8 character starting with the non-ASCII byte d[i]: returns how many
 * continuation bytes it needs (0: the byte can never start a character) and sets
 * *got to how many valid ones follow before hi (got == need: complete, code point
 * in *cp). */
static inline int decode(const uint8_t *restrict d, Py_ssize_t i, Py_ssize_t hi, uint32_t *cp,
                         int *got) {
    uint8_t b = d[i];
    /* fast path: a complete 3-byte character without special ranges (most CJK) */
    if (b >= 0xE1 && b <= 0xEF && b != 0xED && i + 2 < hi && (d[i + 1] & 0xC0) == 0x80 &&
        (d[i + 2] & 0xC0) == 0x80) {
        *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(d[i + 1] & 0x3F) << 6) | (d[i + 2] & 0x3F);
        *got = 2;
        return 2;
    }
    int need = 0;
    uint8_t lo2 = 0x80, hi2 = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b >= 0xE0 && b <= 0xEF) need = 2;
    else if (b >= 0xF0 && b <= 0xF4) need = 3;
    if (b == 0xE0) lo2 = 0xA0;
    if (b == 0xED) hi2 = 0x9F;
    if (b == 0xF0) lo2 = 0x90;
    if (b == 0xF4) hi2 = 0x8F;
    uint32_t c = b & (need == 1 ? 0x1F : need == 2 ? 0x0F : 0x07);
    int n = 0;
    while (n < need && i + 1 + n < hi) {
        uint8_t x = d[i + 1 + n];
        uint8_t l = n == 0 ? lo2 : 0x80, h = n == 0 ? hi2 : 0xBF;
        if (x < l || x > h) break;
        c = (c << 6) | (x & 0x3F);
        n++;
    }
    *cp = c;
    *got = n;
    return need;
}

/* After a letter, further letters change nothing (idempotent state, no flags): the
 * first byte at or after i that does not start a complete letter. */
static inline Py_ssize_t skip_letters(const uint8_t *restrict d, Py_ssize_t i, Py_ssize_t hi,
                                      const uint8_t *restrict table, int simd) {
    for (;;) {
        if (i >= hi) return i;
        if (d[i] < 0x80) {
            if (table[d[i]] != LETTER) return i;
            i = skip_ascii_letters(d, i + 1, hi, table, simd);
            continue;
        }
        uint32_t cp;
        int got, need = decode(d, i, hi, &cp, &got);
        if (!need || got != need || table[cp] != LETTER) return i;
        i += need + 1;
    }
}

static void scan_doc(const uint8_t *restrict d, Py_ssize_t lo, Py_ssize_t hi,
                     const uint8_t *restrict table, int official, int simd,
                     uint8_t *restrict out) {
    State s;
    reset(&s);
    Py_ssize_t i = lo;
    while (i < hi) {
        uint8_t b = d[i];
        if (b < 0x80) {
            uint8_t cls = table[b];
            on_char(&s, cls, i, 1, official, out);
            i++;
            if (cls == LETTER) i = skip_letters(d, i, hi, table, simd);
            continue;
        }
        uint32_t cp;
        int got, need = decode(d, i, hi, &cp, &got);
        if (!need) { /* a byte that can never start a character: its own char, decided */
            on_char(&s, table[0xDC00 + b], i, 1, official, out);
            i++;
        } else if (got == need) {
            uint8_t cls = table[cp];
            on_char(&s, cls, i + need, 1, official, out);
            i += need + 1;
            if (cls == LETTER) i = skip_letters(d, i, hi, table, simd);
        } else { /* truncated sequence: each byte its own char, never pooled */
            for (int k = 0; k <= got; k++) on_char(&s, table[0xDC00 + d[i + k]], i + k, 0, official, out);
            i += got + 1;
        }
    }
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer data, offsets, table;
    int official;
    if (!PyArg_ParseTuple(args, "y*y*y*p", &data, &offsets, &table, &official)) return NULL;
    PyObject *result = NULL;
    if (table.len < 0x110000 || offsets.len % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "bad table or offsets buffer");
        goto done;
    }
    result = PyByteArray_FromStringAndSize(NULL, data.len);
    if (!result) goto done;
    uint8_t *out = (uint8_t *)PyByteArray_AS_STRING(result);
    memset(out, 0, data.len);
    const int64_t *off = (const int64_t *)offsets.buf;
    Py_ssize_t n_docs = offsets.len / 8 - 1;
    for (Py_ssize_t k = 0; k < n_docs; k++) {
        if (off[k] < 0 || off[k] > off[k + 1] || off[k + 1] > data.len) {
            Py_CLEAR(result);
            PyErr_SetString(PyExc_ValueError, "offsets out of range");
            goto done;
        }
    }
    const int simd = ascii_letters_ok((const uint8_t *)table.buf);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n_docs; k++)
        scan_doc((const uint8_t *)data.buf, off[k], off[k + 1], (const uint8_t *)table.buf,
                 official, simd, out);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&table);
    return result;
}

/* Point lists: per-byte levels -> for each stage k, the byte offsets (relative to
 * their document) of bytes with level >= k, as Arrow list offsets + values (int32).
 * The level of byte i is lut[lv[i]] (lut clamped to depth). */

#define LOW7 0x7F7F7F7F7F7F7F7FULL
#define HIGH1 0x8080808080808080ULL

/* The number of non-zero bytes in [lo, hi): room enough for every stage's points
 * (a point of any stage has a non-zero level byte); each list's length is set after
 * the fill (a deeper stage may keep the larger allocation: a few MB per 8 MB chunk,
 * no change seen in peak RSS). A histogram of exact counts per stage cost 4x as much. */
static Py_ssize_t count_nonzero(const uint8_t *restrict lv, Py_ssize_t lo, Py_ssize_t hi) {
    Py_ssize_t n = 0, i = lo;
    for (; i + 8 <= hi; i += 8) {
        uint64_t w;
        memcpy(&w, lv + i, 8);
        /* 1 in the low bit of each non-zero byte, then the sum of the 8 bytes */
        const uint64_t m = ((((w & LOW7) + LOW7) | w) & HIGH1) >> 7;
        n += (Py_ssize_t)((m * 0x0101010101010101ULL) >> 56);
    }
    for (; i < hi; i++) n += lv[i] != 0;
    return n;
}

/* Fill: for each non-zero byte (found 8 at a time), its offset is written to the
 * next free slot of every stage and kept only where its level reaches the stage
 * (no branch on the level), so each values array needs room for one element more
 * than it keeps. */
#define PUSH(DEPTH, I)                                                                  \
    do {                                                                                \
        const uint8_t l = lut[lv[I]];                                                   \
        const int32_t pos = (int32_t)((I) - base);                                      \
        for (int k = 1; k <= (DEPTH); k++) {                                            \
            v[k][n[k]] = pos;                                                           \
            n[k] += l >= k;                                                             \
        }                                                                               \
    } while (0)
#define FILL_DOCS(DEPTH)                                                                \
    for (Py_ssize_t d = 0; d < n_docs; d++) {                                           \
        for (int k = 1; k <= (DEPTH); k++) o[k][d] = n[k];                              \
        const Py_ssize_t base = off[d], end = off[d + 1];                               \
        Py_ssize_t i = base;                                                            \
        for (; i + 8 <= end; i += 8) {                                                  \
            uint64_t w;                                                                 \
            memcpy(&w, lv + i, 8);                                                      \
            /* high bit of each non-zero byte */                                        \
            uint64_t m = (((w & LOW7) + LOW7) | w) & HIGH1;                             \
            while (m) {                                                                 \
                const Py_ssize_t j = i + (__builtin_ctzll(m) >> 3);                     \
                PUSH(DEPTH, j);                                                         \
                m &= m - 1;                                                             \
            }                                                                           \
        }                                                                               \
        for (; i < end; i++) PUSH(DEPTH, i);                                            \
    }

static void fill_lists(const uint8_t *restrict lv, const uint8_t *restrict lut,
                       const int64_t *restrict off, Py_ssize_t n_docs, int depth,
                       int32_t *restrict *o, int32_t *restrict *v, Py_ssize_t *counts) {
    Py_ssize_t n[10] = {0};
    switch (depth) {
    case 1: FILL_DOCS(1) break;
    case 2: FILL_DOCS(2) break;
    case 3: FILL_DOCS(3) break;
    case 4: FILL_DOCS(4) break;
    default: FILL_DOCS(depth) break;
    }
    for (int k = 1; k <= depth; k++) o[k][n_docs] = (int32_t)(counts[k] = n[k]);
}
#undef FILL_DOCS
#undef PUSH

/* fill_lists for flags below 16 (scan() flags), 16 bytes at a time with AVX2: the
 * flags of 16 bytes become levels by one byte shuffle (lut16), and for each stage the
 * offsets of the bytes whose level reaches it are packed by a permutation looked up
 * from their 8-bit mask (pack8). Each store writes 8 offsets, the packed ones first,
 * so a values array needs room for 8 elements more than it keeps. No branch on the
 * data but "any flag among these 16 bytes": about twice fill_lists' speed (8 MB of
 * English, three stages: 4.4 ms against 8.7). Chosen at run time on CPUs with AVX2
 * (simd_fill() turns it off, to compare). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(_MSC_VER)
#include <immintrin.h>
#define HAVE_AVX2_FILL 1
static int use_avx2_fill = 0;
static uint32_t pack8[256][8];

static void init_pack8(void) {
    for (int m = 0; m < 256; m++) {
        int n = 0;
        for (int b = 0; b < 8; b++)
            if (m & (1 << b)) pack8[m][n++] = (uint32_t)b;
        while (n < 8) pack8[m][n++] = 0;
    }
}

__attribute__((target("avx2,popcnt"))) static void fill_lists_avx2(
    const uint8_t *restrict lv, const uint8_t *restrict lut, const int64_t *restrict off,
    Py_ssize_t n_docs, int depth, int32_t *restrict *o, int32_t *restrict *v, Py_ssize_t *counts) {
    Py_ssize_t n[10] = {0};
    const __m128i lut16 = _mm_loadu_si128((const __m128i *)lut);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (Py_ssize_t d = 0; d < n_docs; d++) {
        for (int k = 1; k <= depth; k++) o[k][d] = (int32_t)n[k];
        const Py_ssize_t base = off[d], end = off[d + 1];
        Py_ssize_t i = base;
        for (; i + 16 <= end; i += 16) {
            const __m128i f = _mm_loadu_si128((const __m128i *)(lv + i));
            if (_mm_testz_si128(f, f)) continue;
            const __m128i level = _mm_shuffle_epi8(lut16, f);
            const __m256i lo = _mm256_add_epi32(_mm256_set1_epi32((int32_t)(i - base)), iota);
            const __m256i hi = _mm256_add_epi32(lo, _mm256_set1_epi32(8));
            for (int k = 1; k <= depth; k++) {
                const unsigned mask = (unsigned)_mm_movemask_epi8(
                    _mm_cmpgt_epi8(level, _mm_set1_epi8((char)(k - 1))));
                const unsigned m0 = mask & 0xFF, m1 = mask >> 8;
                __m256i idx = _mm256_loadu_si256((const __m256i *)pack8[m0]);
                _mm256_storeu_si256((__m256i *)(v[k] + n[k]), _mm256_permutevar8x32_epi32(lo, idx));
                n[k] += __builtin_popcount(m0);
                idx = _mm256_loadu_si256((const __m256i *)pack8[m1]);
                _mm256_storeu_si256((__m256i *)(v[k] + n[k]), _mm256_permutevar8x32_epi32(hi, idx));
                n[k] += __builtin_popcount(m1);
            }
        }
        for (; i < end; i++) {
            const uint8_t l = lut[lv[i]];
            for (int k = 1; k <= depth; k++) {
                v[k][n[k]] = (int32_t)(i - base);
                n[k] += l >= k;
            }
        }
    }
    for (int k = 1; k <= depth; k++) o[k][n_docs] = (int32_t)(counts[k] = n[k]);
}
#endif

/* simd_fill(on) -> whether the AVX2 fill was on before; it is turned on only where
 * the CPU has AVX2. */
static PyObject *simd_fill(PyObject *self, PyObject *args) {
    int on;
    if (!PyArg_ParseTuple(args, "p", &on)) return NULL;
#ifdef HAVE_AVX2_FILL
    const int before = use_avx2_fill;
    use_avx2_fill = on && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    return PyBool_FromLong(before);
#else
    (void)on;
    Py_RETURN_FALSE;
#endif
}

/* [(list_offsets, values)] per stage; the GIL is held on entry and on return. */
static PyObject *build_lists(const uint8_t *lv, const uint8_t *lut, const int64_t *off,
                             Py_ssize_t n_docs, int depth, int flags16) {
    Py_ssize_t room, counts[10];
    Py_BEGIN_ALLOW_THREADS
    room = count_nonzero(lv, off[0], off[n_docs]);
    Py_END_ALLOW_THREADS
    PyObject *result = PyList_New(depth);
    if (!result) return NULL;
    PyObject *vals[10];
    int32_t *o[10], *v[10];
    for (int k = 1; k <= depth; k++) {
        PyObject *lo = PyByteArray_FromStringAndSize(NULL, (n_docs + 1) * 4);
        PyObject *va = PyByteArray_FromStringAndSize(NULL, (room + 8) * 4);
        if (!lo || !va) {
            Py_XDECREF(lo);
            Py_XDECREF(va);
            Py_DECREF(result);
            return NULL;
        }
        o[k] = (int32_t *)PyByteArray_AS_STRING(lo);
        v[k] = (int32_t *)PyByteArray_AS_STRING(va);
        vals[k] = va;
        PyList_SET_ITEM(result, k - 1, Py_BuildValue("(NN)", lo, va));
    }
#ifdef HAVE_AVX2_FILL
    const int avx2 = flags16 && use_avx2_fill; /* read with the GIL (simd_fill sets it) */
#endif
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_AVX2_FILL
    if (avx2)
        fill_lists_avx2(lv, lut, off, n_docs, depth, o, v, counts);
    else
#endif
        fill_lists(lv, lut, off, n_docs, depth, o, v, counts);
    Py_END_ALLOW_THREADS
    for (int k = 1; k <= depth; k++) {
        if (PyByteArray_Resize(vals[k], counts[k] * 4) < 0) {
            Py_DECREF(result);
            return NULL;
        }
    }
    return result;
}

/* lut clamped to depth (identity when none is given) */
static int make_lut(Py_buffer *lutbuf, int depth, uint8_t *lut) {
    if (lutbuf->buf && lutbuf->len != 256) return -1;
    for (int b = 0; b < 256; b++) {
        int l = lutbuf->buf ? ((const uint8_t *)lutbuf->buf)[b] : b;
        lut[b] = (uint8_t)(l > depth ? depth : l);
    }
    lut[0] = 0;
    return 0;
}

static int check_offsets(const int64_t *off, Py_ssize_t n_docs, Py_ssize_t len) {
    if (n_docs < 0 || off[0] < 0) return -1;
    for (Py_ssize_t d = 0; d < n_docs; d++)
        if (off[d] > off[d + 1] || off[d + 1] - off[d] > INT32_MAX) return -1;
    return off[n_docs] > len ? -1 : 0;
}

static PyObject *point_lists(PyObject *self, PyObject *args) {
    Py_buffer levels, offsets, lutbuf = {0};
    int depth;
    if (!PyArg_ParseTuple(args, "y*y*i|y*", &levels, &offsets, &depth, &lutbuf)) return NULL;
    PyObject *result = NULL;
    const int64_t *off = (const int64_t *)offsets.buf;
    uint8_t lut[256];
    if (depth < 1 || depth > 9 || offsets.len % 8 || offsets.len < 8 ||
        make_lut(&lutbuf, depth, lut) < 0 ||
        check_offsets(off, offsets.len / 8 - 1, levels.len) < 0) {
        PyErr_SetString(PyExc_ValueError, "bad depth, offsets, levels or lut");
        goto done;
    }
    result = build_lists((const uint8_t *)levels.buf, lut, off, offsets.len / 8 - 1, depth, 0);
done:
    PyBuffer_Release(&levels);
    PyBuffer_Release(&offsets);
    if (lutbuf.buf) PyBuffer_Release(&lutbuf);
    return result;
}

/* Documents [lo_doc, hi_doc) of a batch, scanned into their part of `out` (zeroed
 * first), on a thread of their own: the parts of one batch are disjoint, and a
 * document's state never leaves it. No Python API is called (plain pthreads: the
 * GIL is released, and CPython's thread API wants it held on 3.11). */
typedef struct {
    const uint8_t *d, *table;
    const int64_t *off;
    Py_ssize_t lo_doc, hi_doc;
    int official, simd;
    uint8_t *out;
} ScanPart;

static void scan_part(const ScanPart *p) {
    const Py_ssize_t lo = p->off[p->lo_doc], hi = p->off[p->hi_doc];
    memset(p->out + lo, 0, hi - lo);
    for (Py_ssize_t k = p->lo_doc; k < p->hi_doc; k++)
        scan_doc(p->d, p->off[k], p->off[k + 1], p->table, p->official, p->simd, p->out);
}

static void *scan_part_thread(void *arg) {
    scan_part((const ScanPart *)arg);
    return NULL;
}

#define MAX_SCAN_THREADS 8

/* scan_doc over every document, in up to `threads` parts of about equal bytes (whole
 * documents), all but the first on new threads. Only the documents' bytes of `out`
 * are written (the point lists read no others). Called without the GIL. A part
 * whose thread cannot be started is scanned on this one. */
static void scan_docs(const uint8_t *d, const int64_t *off, Py_ssize_t n_docs,
                      const uint8_t *table, int official, int simd, int threads, uint8_t *out) {
    ScanPart parts[MAX_SCAN_THREADS];
    pthread_t ids[MAX_SCAN_THREADS];
    int started[MAX_SCAN_THREADS] = {0};
    int n = 0;
    Py_ssize_t start = 0;
    const int64_t total = off[n_docs] - off[0];
    if (threads > MAX_SCAN_THREADS) threads = MAX_SCAN_THREADS;
    for (int t = 1; t <= threads && start < n_docs; t++, n++) {
        Py_ssize_t stop = n_docs;
        if (t < threads) { /* the first document ending at or past t/threads of the bytes */
            const int64_t target = off[0] + total / threads * t;
            Py_ssize_t a = start + 1, b = n_docs;
            while (a < b) {
                Py_ssize_t m = a + (b - a) / 2;
                if (off[m] < target) a = m + 1;
                else b = m;
            }
            stop = a;
        }
        parts[n] = (ScanPart){d, table, off, start, stop, official, simd, out};
        if (n > 0) started[n] = pthread_create(&ids[n], NULL, scan_part_thread, &parts[n]) == 0;
        start = stop;
    }
    for (int k = 0; k < n; k++)
        if (!started[k]) scan_part(&parts[k]); /* the first part, and any not started */
    for (int k = 1; k < n; k++)
        if (started[k]) pthread_join(ids[k], NULL);
}

/* scan_points(): scan() then point_lists() with lut, without a Python flags array;
 * the scan runs in `threads` parts at once (default 1). */
static PyObject *scan_points(PyObject *self, PyObject *args) {
    Py_buffer data, offsets, table, lutbuf;
    int official, depth, threads = 1;
    if (!PyArg_ParseTuple(args, "y*y*y*piy*|i", &data, &offsets, &table, &official, &depth,
                          &lutbuf, &threads))
        return NULL;
    PyObject *result = NULL;
    const int64_t *off = (const int64_t *)offsets.buf;
    Py_ssize_t n_docs = offsets.len / 8 - 1;
    uint8_t lut[256];
    if (table.len < 0x110000 || depth < 1 || depth > 9 || offsets.len % 8 || offsets.len < 8 ||
        threads < 1 || make_lut(&lutbuf, depth, lut) < 0 ||
        check_offsets(off, n_docs, data.len) < 0) {
        PyErr_SetString(PyExc_ValueError, "bad table, depth, offsets, lut or threads");
        goto done;
    }
    uint8_t *flags = malloc(data.len ? data.len : 1);
    if (!flags) {
        PyErr_NoMemory();
        goto done;
    }
    const int simd = ascii_letters_ok((const uint8_t *)table.buf);
    Py_BEGIN_ALLOW_THREADS
    scan_docs((const uint8_t *)data.buf, off, n_docs, (const uint8_t *)table.buf, official, simd,
              threads, flags);
    Py_END_ALLOW_THREADS
    result = build_lists(flags, lut, off, n_docs, depth, 1); /* scan flags are below 16 */
    free(flags);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&table);
    PyBuffer_Release(&lutbuf);
    return result;
}

/* cut(): one buffer of plain text -> documents, as aunet_cli.readers._txt cuts it.
 *
 * paragraph: pieces between matches of \n\r?\n (leftmost, non-overlapping), each
 * stripped of CR/LF at both ends; empty ones are dropped (no record number).
 * line: pieces between \n, each without one trailing CR; every piece has a record
 * number, empty ones are counted.
 * Unless `final`, the text after the last separator is not a piece (it may go on
 * in the next buffer): its start is returned as `carry`; with `final` the whole
 * buffer is one piece (the last one of the input, which holds no separator).
 *
 * Returns (data: documents joined, offsets: int64 (n + 1), keys: int64 record
 * numbers counted from 1, records: how many record numbers were used, empty: how
 * many of them were empty, carry). */
static PyObject *cut(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int paragraphs, final;
    if (!PyArg_ParseTuple(args, "y*pp", &buf, &paragraphs, &final)) return NULL;
    const uint8_t *b = (const uint8_t *)buf.buf;
    const Py_ssize_t len = buf.len;
    PyObject *data = NULL, *offsets = NULL, *keys = NULL, *result = NULL;
    /* at most one document per separator (>= 1 byte) plus the last piece */
    Py_ssize_t n_sep = 0;
    for (const uint8_t *p = b; (p = memchr(p, '\n', b + len - p)) != NULL; p++) n_sep++;
    data = PyBytes_FromStringAndSize(NULL, len);
    offsets = PyByteArray_FromStringAndSize(NULL, (n_sep + 2) * 8);
    keys = PyByteArray_FromStringAndSize(NULL, (n_sep + 1) * 8);
    if (!data || !offsets || !keys) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(data);
    int64_t *off = (int64_t *)PyByteArray_AS_STRING(offsets);
    int64_t *key = (int64_t *)PyByteArray_AS_STRING(keys);
    Py_ssize_t n = 0, size = 0, records = 0, empty = 0, start = 0, carry = len;
    off[0] = 0;
#define PIECE(S, E)                                                                \
    do {                                                                           \
        Py_ssize_t s_ = (S), e_ = (E);                                             \
        if (paragraphs) {                                                          \
            while (s_ < e_ && (b[s_] == '\n' || b[s_] == '\r')) s_++;              \
            while (e_ > s_ && (b[e_ - 1] == '\n' || b[e_ - 1] == '\r')) e_--;      \
            if (s_ == e_) break;                                                   \
            records++;                                                             \
        } else {                                                                   \
            records++;                                                             \
            if (e_ > s_ && b[e_ - 1] == '\r') e_--;                                \
            if (s_ == e_) {                                                        \
                empty++;                                                           \
                break;                                                             \
            }                                                                      \
        }                                                                          \
        memcpy(out + size, b + s_, e_ - s_);                                       \
        size += e_ - s_;                                                           \
        key[n] = records;                                                          \
        off[++n] = size;                                                           \
    } while (0)
    Py_BEGIN_ALLOW_THREADS
    if (final) {
        if (len) PIECE(0, len);
    } else {
        Py_ssize_t i = 0;
        const uint8_t *p;
        while (i < len && (p = memchr(b + i, '\n', len - i)) != NULL) {
            i = p - b;
            Py_ssize_t sep_end;
            if (!paragraphs) sep_end = i + 1;
            else if (i + 2 < len && b[i + 1] == '\r' && b[i + 2] == '\n') sep_end = i + 3;
            else if (i + 1 < len && b[i + 1] == '\n') sep_end = i + 2;
            else {
                i++;
                continue;
            }
            PIECE(start, i);
            start = i = sep_end;
        }
        carry = start;
    }
    Py_END_ALLOW_THREADS
#undef PIECE
    if (_PyBytes_Resize(&data, size) < 0) goto done;
    if (PyByteArray_Resize(offsets, (n + 1) * 8) < 0 || PyByteArray_Resize(keys, n * 8) < 0)
        goto done;
    result = Py_BuildValue("(OOOnnn)", data, offsets, keys, records, empty, carry);
done:
    Py_XDECREF(data);
    Py_XDECREF(offsets);
    Py_XDECREF(keys);
    PyBuffer_Release(&buf);
    return result;
}

/* gather(): the documents of one or more blocks where mask is non-zero, joined.
 * `blocks` is a sequence of (data, offsets_int64): block b's document i is
 * data[offsets[i]:offsets[i + 1]]; `mask` holds one byte per document, over all
 * blocks in order. Consecutive documents are copied with one memcpy. Returns (data,
 * offsets_int64). */
static PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *blocks_arg;
    Py_buffer mask;
    if (!PyArg_ParseTuple(args, "Oy*", &blocks_arg, &mask)) return NULL;
    PyObject *blocks = NULL, *out = NULL, *out_off = NULL, *result = NULL;
    Py_buffer *bufs = NULL; /* 2 per block: data, offsets */
    Py_ssize_t n_blocks = 0, held = 0;
    blocks = PySequence_Fast(blocks_arg, "blocks must be a sequence of (data, offsets)");
    if (!blocks) goto done;
    n_blocks = PySequence_Fast_GET_SIZE(blocks);
    bufs = PyMem_Calloc(n_blocks ? 2 * n_blocks : 1, sizeof(Py_buffer));
    if (!bufs) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *m = (const uint8_t *)mask.buf;
    Py_ssize_t size = 0, n = 0, d_all = 0;
    for (Py_ssize_t b = 0; b < n_blocks; b++) {
        PyObject *item = PySequence_Fast_GET_ITEM(blocks, b);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "each block must be a (data, offsets) tuple");
            goto done;
        }
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 0), &bufs[held], PyBUF_SIMPLE) < 0) goto done;
        held++;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 1), &bufs[held], PyBUF_SIMPLE) < 0) goto done;
        held++;
        const Py_buffer *data = &bufs[2 * b], *offsets = &bufs[2 * b + 1];
        const int64_t *off = (const int64_t *)offsets->buf;
        const Py_ssize_t n_docs = offsets->len / 8 - 1;
        if (offsets->len % 8 || n_docs < 0 || d_all + n_docs > mask.len) {
            PyErr_SetString(PyExc_ValueError, "bad offsets or mask");
            goto done;
        }
        for (Py_ssize_t d = 0; d < n_docs; d++, d_all++) {
            if (off[d] < 0 || off[d] > off[d + 1] || off[d + 1] > data->len) {
                PyErr_SetString(PyExc_ValueError, "offsets out of range");
                goto done;
            }
            if (m[d_all]) size += off[d + 1] - off[d], n++;
        }
    }
    if (d_all != mask.len) {
        PyErr_SetString(PyExc_ValueError, "bad offsets or mask");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, size);
    out_off = PyByteArray_FromStringAndSize(NULL, (n + 1) * 8);
    if (!out || !out_off) goto done;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    int64_t *oo = (int64_t *)PyByteArray_AS_STRING(out_off);
    Py_ssize_t at = 0, k = 0;
    oo[0] = 0;
    Py_BEGIN_ALLOW_THREADS  /* megabytes of copying: let the chunk threads run */
    d_all = 0;
    for (Py_ssize_t b = 0; b < n_blocks; b++) {
        const uint8_t *src = (const uint8_t *)bufs[2 * b].buf;
        const int64_t *off = (const int64_t *)bufs[2 * b + 1].buf;
        const Py_ssize_t n_docs = bufs[2 * b + 1].len / 8 - 1;
        Py_ssize_t d = 0;
        while (d < n_docs) {
            if (!m[d_all + d]) {
                d++;
                continue;
            }
            const Py_ssize_t first = d; /* a run of selected documents, copied at once */
            for (; d < n_docs && m[d_all + d]; d++) oo[++k] = at + off[d + 1] - off[first];
            memcpy(o + at, src + off[first], off[d] - off[first]);
            at += off[d] - off[first];
        }
        d_all += n_docs;
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(OO)", out, out_off);
done:
    for (Py_ssize_t i = 0; i < held; i++) PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
    Py_XDECREF(blocks);
    Py_XDECREF(out);
    Py_XDECREF(out_off);
    PyBuffer_Release(&mask);
    return result;
}

/* ids(): "<prefix><key>" for every int64 key, as an Arrow string column's buffers:
 * (offsets int32 (n + 1), data). */
static PyObject *ids(PyObject *self, PyObject *args) {
    Py_buffer prefix, keys;
    if (!PyArg_ParseTuple(args, "y*y*", &prefix, &keys)) return NULL;
    PyObject *offsets = NULL, *data = NULL, *result = NULL;
    Py_ssize_t n = keys.len / 8;
    if (keys.len % 8 || prefix.len > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "bad keys or prefix");
        goto done;
    }
    const int64_t *k = (const int64_t *)keys.buf;
    if ((double)n * (prefix.len + 20) > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many ids for one column");
        goto done;
    }
    offsets = PyByteArray_FromStringAndSize(NULL, (n + 1) * 4);
    data = PyByteArray_FromStringAndSize(NULL, n * (prefix.len + 20));
    if (!offsets || !data) goto done;
    int32_t *o = (int32_t *)PyByteArray_AS_STRING(offsets);
    char *d = PyByteArray_AS_STRING(data);
    Py_ssize_t at = 0;
    o[0] = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        memcpy(d + at, prefix.buf, prefix.len);
        at += prefix.len;
        char tmp[24];
        int len = 0;
        uint64_t x = k[i] < 0 ? (uint64_t)0 - (uint64_t)k[i] : (uint64_t)k[i];
        do {
            tmp[len++] = (char)('0' + x % 10);
            x /= 10;
        } while (x);
        if (k[i] < 0) tmp[len++] = '-';
        while (len) d[at++] = tmp[--len];
        o[i + 1] = (int32_t)at;
    }
    Py_END_ALLOW_THREADS
    if (PyByteArray_Resize(data, at) < 0) goto done;
    result = Py_BuildValue("(OO)", offsets, data);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&keys);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(data, offsets_int64, class_table, official) -> bytearray of per-byte flags"},
    {"point_lists", point_lists, METH_VARARGS,
     "point_lists(levels, offsets_int64, depth[, lut]) -> [(list_offsets_i32, values_i32)] per "
     "stage"},
    {"scan_points", scan_points, METH_VARARGS,
     "scan_points(data, offsets_int64, class_table, official, depth, lut[, threads]) -> "
     "point_lists of lut[scan flags]"},
    {"simd_fill", simd_fill, METH_VARARGS,
     "simd_fill(on) -> bool: use the AVX2 point-list fill where the CPU has it (default on); "
     "returns the previous setting"},
    {"ids", ids, METH_VARARGS,
     "ids(prefix, keys_int64) -> (offsets_i32, data) of the strings prefix + str(key)"},
    {"cut", cut, METH_VARARGS,
     "cut(buffer, paragraphs, final) -> (data, offsets_int64, keys_int64, records, empty, carry)"},
    {"gather", gather, METH_VARARGS,
     "gather([(data, offsets_int64), ...], mask_u8) -> (data, offsets_int64) of the documents "
     "in mask"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fast", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fast(void) {
#ifdef HAVE_AVX2_FILL
    init_pack8();
    use_avx2_fill = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#endif
    return PyModule_Create(&module);
}
