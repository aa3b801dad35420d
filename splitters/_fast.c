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
#include <stdint.h>
#include <string.h>

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

static void scan_doc(const uint8_t *restrict d, Py_ssize_t lo, Py_ssize_t hi,
                     const uint8_t *restrict table, int official, uint8_t *restrict out) {
    State s;
    reset(&s);
    Py_ssize_t i = lo;
    while (i < hi) {
        uint8_t b = d[i];
        if (b < 0x80) {
            uint8_t cls = table[b];
            on_char(&s, cls, i, 1, official, out);
            i++;
            /* further letters change nothing (idempotent state, no flags): skip them */
            if (cls == LETTER)
                while (i < hi && d[i] < 0x80 && table[d[i]] == LETTER) i++;
            continue;
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
        if (!need) { /* a byte that can never start a character: its own char, decided */
            on_char(&s, table[0xDC00 + b], i, 1, official, out);
            i++;
            continue;
        }
        uint32_t cp = b & (need == 1 ? 0x1F : need == 2 ? 0x0F : 0x07);
        int got = 0;
        while (got < need && i + 1 + got < hi) {
            uint8_t c = d[i + 1 + got];
            uint8_t l = got == 0 ? lo2 : 0x80, h = got == 0 ? hi2 : 0xBF;
            if (c < l || c > h) break;
            cp = (cp << 6) | (c & 0x3F);
            got++;
        }
        if (got == need) {
            on_char(&s, table[cp], i + need, 1, official, out);
            i += need + 1;
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
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n_docs; k++)
        scan_doc((const uint8_t *)data.buf, off[k], off[k + 1], (const uint8_t *)table.buf,
                 official, out);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&table);
    return result;
}

/* point_lists(): per-byte levels -> for each stage k, the byte offsets (relative to
 * their document) of bytes with level >= k, as Arrow list offsets + values (int32). */
static PyObject *point_lists(PyObject *self, PyObject *args) {
    Py_buffer levels, offsets;
    int depth;
    if (!PyArg_ParseTuple(args, "y*y*i", &levels, &offsets, &depth)) return NULL;
    PyObject *result = NULL;
    const uint8_t *lv = (const uint8_t *)levels.buf;
    const int64_t *off = (const int64_t *)offsets.buf;
    Py_ssize_t n_docs = offsets.len / 8 - 1;
    if (depth < 1 || depth > 9 || offsets.len % 8 || n_docs < 0 || off[n_docs] > levels.len) {
        PyErr_SetString(PyExc_ValueError, "bad depth, offsets or levels");
        goto done;
    }
    /* pass 1: how many points per stage; pass 2: fill every stage at once */
    Py_ssize_t counts[10] = {0};
    for (Py_ssize_t i = off[0]; i < off[n_docs]; i++) {
        uint8_t l = lv[i];
        if (l) counts[l > depth ? depth : l]++;
    }
    for (int k = depth - 1; k >= 1; k--) counts[k] += counts[k + 1];
    result = PyList_New(depth);
    if (!result) goto done;
    int32_t *o[10], *v[10];
    int32_t n[10] = {0};
    for (int k = 1; k <= depth; k++) {
        PyObject *lo = PyByteArray_FromStringAndSize(NULL, (n_docs + 1) * 4);
        PyObject *va = PyByteArray_FromStringAndSize(NULL, counts[k] * 4);
        if (!lo || !va) {
            Py_XDECREF(lo);
            Py_XDECREF(va);
            Py_CLEAR(result);
            goto done;
        }
        o[k] = (int32_t *)PyByteArray_AS_STRING(lo);
        v[k] = (int32_t *)PyByteArray_AS_STRING(va);
        PyList_SET_ITEM(result, k - 1, Py_BuildValue("(NN)", lo, va));
    }
    for (Py_ssize_t d = 0; d < n_docs; d++) {
        for (int k = 1; k <= depth; k++) o[k][d] = n[k];
        const int64_t base = off[d];
        for (Py_ssize_t i = off[d]; i < off[d + 1]; i++) {
            uint8_t l = lv[i];
            if (!l) continue;
            if (l > depth) l = depth;
            for (int k = 1; k <= l; k++) v[k][n[k]++] = (int32_t)(i - base);
        }
    }
    for (int k = 1; k <= depth; k++) o[k][n_docs] = n[k];
done:
    PyBuffer_Release(&levels);
    PyBuffer_Release(&offsets);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(data, offsets_int64, class_table, official) -> bytearray of per-byte flags"},
    {"point_lists", point_lists, METH_VARARGS,
     "point_lists(levels, offsets_int64, depth) -> [(list_offsets_i32, values_i32)] per stage"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fast", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&module); }
