/* The compiled form of scan.py's scan_batch and _keys: a batch of 64 KiB chunks joined in one buffer is
 * walked once, reading record headers and each record's event keys without decoding BinXML. Its answers
 * are exactly those of the numpy path (tests/test_scan_native.py compares them on real and damaged
 * chunks); scan.py calls it when it is built and falls back to numpy when it is not.
 *
 * Two calls, so that Python allocates every output array once its size is known:
 *   walk(buf, ends, bad, bounds) -> records
 *       which chunks the scan cannot account for exactly (`bad`, which Python has set already for the
 *       chunks that are not 64 KiB: they stand zero-filled in `buf`) and where each chunk's records
 *       start among all of them (`bounds`);
 *   keys(buf, bad, bounds, id_table, wide, flags)
 *       the records of those chunks: `wide`, int64 rows owner, offsets, sizes, record ids, written,
 *       event ids, provider at, provider length, template at; `flags`, bool rows unsure, candidate.
 *
 * Layout (../shared/reference/evtx-format.md). Record header: u32 magic 2A 2A 00 00 at 0, u32 size at 4,
 * u64 record id at 8, u64 written FILETIME at 16, BinXML from 24 ("body"), u32 copy of the size at
 * size - 4. Body: fragment header 0F 01 01 00, template instance 0C 01 <u32 template id> <u32 definition
 * chunk offset at 10>; a resident definition (offset == body + 14) holds <u32 next> <GUID> <u32 data size
 * at 34> and its data from 38; then <u32 value count> and a 4-byte descriptor per value (u16 size, u8
 * type, u8 0), then the values. The System template's value 3 is the EventID (u16), value 14 the
 * Provider/@Name (string).
 *
 * Every read is checked against the buffer: by get(), or once per chunk for the magic search. The rules
 * below keep the reads whose values matter inside the record, as the numpy path's do, so get() never
 * fails on them; where it would, the chunk or record is taken as unaccounted for.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CHUNK_SIZE 65536
#define CHUNK_HEADER_SIZE 512
#define RECORD_HEADER_SIZE 24
#define MIN_RECORD_SIZE (RECORD_HEADER_SIZE + 4)
#define LAST_START (CHUNK_SIZE - RECORD_HEADER_SIZE) /* the last offset a record header fits at */
#define FRAGMENT 0x0C0001010FULL /* 0F 01 01 00 0C: fragment header, template instance token */
#define EVENT_ID_INDEX 3
#define PROVIDER_INDEX 14
#define TYPE_UINT16 0x06
#define TYPE_STRING 0x01
#define ROWS_WIDE 9
#define ROWS_FLAGS 2

typedef struct {
    const uint8_t *data;
    int64_t len;
} Bytes;

/* The little-endian value of `width` (1, 2, 4 or 8) bytes at `at`, or 0 (with *fine cleared) when they
 * are not all inside the buffer. */
static inline uint64_t get(Bytes b, int64_t at, int width, int *fine) {
    if (at < 0 || at > b.len - width) {
        *fine = 0;
        return 0;
    }
    uint64_t value = 0;
#if PY_LITTLE_ENDIAN
    memcpy(&value, b.data + at, (size_t)width); /* one load on the usual hosts */
#else
    for (int i = width - 1; i >= 0; i--)
        value = (value << 8) | b.data[at + i];
#endif
    return value;
}

static inline int is_magic(const uint8_t *at) { return memcmp(at, "\x2a\x2a\x00\x00", 4) == 0; }

/* One chunk's walk: its record count, or -1 when the scan cannot account for it exactly. Records are
 * the magics at 8-aligned offsets from 512 whose header fits before `end`; they must chain from 512, each
 * of a size that fits the chunk and ends with its copy, and after the last one nothing but zeros may
 * stand up to `end` (the slow walk stops there) unless no header fits before it. */
static int64_t walk_chunk(Bytes b, int64_t base, int64_t end) {
    int fine = 1;
    int64_t records = 0, tail = CHUNK_HEADER_SIZE;
    /* The last slot whose header fits before `end` (and in the chunk). */
    int64_t last = end >= CHUNK_SIZE ? LAST_START : end < RECORD_HEADER_SIZE ? -1 : end - RECORD_HEADER_SIZE;
    if (base < 0 || base > b.len - CHUNK_SIZE)
        return -1; /* never: walk() checks that the buffer holds every chunk */
    const uint8_t *chunk = b.data + base; /* the magic search reads slots 512..LAST_START + 3 of it */
    for (int64_t at = CHUNK_HEADER_SIZE; at <= last; at += 8) {
        if (!is_magic(chunk + at))
            continue;
        int64_t size = (int64_t)get(b, base + at + 4, 4, &fine);
        if (at != tail) /* the first is not at 512, or a gap or overlap before this one */
            return -1;
        if (size < MIN_RECORD_SIZE || at + size > CHUNK_SIZE)
            return -1;
        if ((int64_t)get(b, base + at + size - 4, 4, &fine) != size)
            return -1;
        tail = at + size;
        records++;
    }
    if (!fine)
        return -1;
    if (tail + RECORD_HEADER_SIZE <= end) {
        /* Python's buf[base + tail : base + end]: an `end` past the chunk runs on into the next ones. */
        int64_t stop = end < b.len - base ? base + end : b.len;
        for (int64_t at = base + tail; at < stop; at++)
            if (b.data[at])
                return -1;
    }
    return records;
}

static PyObject *walk(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, ends, bad, bounds;
    if (!PyArg_ParseTuple(args, "y*y*w*w*", &buf, &ends, &bad, &bounds))
        return NULL;
    int64_t count = (int64_t)(bad.len);
    PyObject *result = NULL;
    if (buf.len != count * CHUNK_SIZE || ends.len != count * 8 || bounds.len != (count + 1) * 8) {
        PyErr_SetString(PyExc_ValueError, "walk: buffer sizes do not match the chunk count");
        goto done;
    }
    Bytes b = {buf.buf, buf.len};
    uint8_t *flags = bad.buf;
    int64_t *starts = bounds.buf, total = 0;
    const uint8_t *raw_ends = ends.buf;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t c = 0; c < count; c++) {
        starts[c] = total;
        if (flags[c])
            continue;
        int64_t end;
        memcpy(&end, raw_ends + 8 * c, 8);
        int64_t records = walk_chunk(b, c * CHUNK_SIZE, end);
        if (records < 0)
            flags[c] = 1;
        else
            total += records;
    }
    starts[count] = total;
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong(total);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&bad);
    PyBuffer_Release(&bounds);
    return result;
}

typedef struct {
    int64_t event_id, provider_at, provider_len, template_at;
    uint8_t unsure, candidate;
} Keys;

/* scan.py's _keys for the record at `at` (in the joined buffer) of `size` bytes in the chunk at `base`. */
static Keys record_keys(Bytes b, int64_t at, int64_t size, int64_t base, const uint8_t *table, int64_t tlen) {
    Keys k = {-1, -1, 0, -1, 1, 0};
    int fine = 1;
    int64_t end = at + size - 4; /* the size copy: values end before it */
    int64_t body = at + RECORD_HEADER_SIZE;
    if (body + 14 > end || (get(b, body, 8, &fine) & 0xFFFFFFFFFFULL) != FRAGMENT)
        return k;
    int64_t definition = (int64_t)get(b, body + 10, 4, &fine);
    int64_t descriptors = body + 14;
    if (definition == body - base + 14) { /* resident: the definition follows, its data size at 34 */
        if (body + 42 > end)
            return k;
        descriptors = body + 38 + (int64_t)get(b, body + 34, 4, &fine);
    }
    if (descriptors + 4 > end || definition < CHUNK_HEADER_SIZE || definition + 24 > CHUNK_SIZE)
        return k;
    int64_t values = (int64_t)get(b, descriptors, 4, &fine);
    int64_t first_value = descriptors + 4 + 4 * values;
    if (values <= EVENT_ID_INDEX || first_value > end)
        return k;
    /* Value 3, the event id: a u16 placed by the sizes of values 0-2. */
    int64_t position = first_value;
    for (int i = 0; i < EVENT_ID_INDEX; i++)
        position += (int64_t)get(b, descriptors + 4 + 4 * i, 2, &fine);
    int64_t third = descriptors + 4 + 4 * EVENT_ID_INDEX;
    if (get(b, third + 2, 1, &fine) != TYPE_UINT16 || get(b, third, 2, &fine) != 2 || position + 2 > end)
        return k;
    int64_t event_id = (int64_t)get(b, position, 2, &fine);
    if (!fine)
        return k; /* never: every read above lies inside the record */
    k.unsure = 0;
    k.event_id = event_id;
    k.template_at = definition + base;
    if (table) {
        k.candidate = table[event_id < tlen ? event_id : tlen - 1] != 0;
        if (!k.candidate)
            return k;
    }
    if (values <= PROVIDER_INDEX)
        return k;
    /* Value 14, the provider name: placed by the sizes of values 0-13. */
    int64_t where = first_value;
    for (int i = 0; i < PROVIDER_INDEX; i++)
        where += (int64_t)get(b, descriptors + 4 + 4 * i, 2, &fine);
    int64_t provider = descriptors + 4 + 4 * PROVIDER_INDEX;
    int64_t length = (int64_t)get(b, provider, 2, &fine);
    int64_t kind = (int64_t)get(b, provider + 2, 1, &fine);
    if (fine && kind == TYPE_STRING && where + length <= end) {
        k.provider_at = where;
        k.provider_len = length;
    }
    return k;
}

static PyObject *keys(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf, bad, bounds, table, wide, flags;
    PyObject *table_object;
    if (!PyArg_ParseTuple(args, "y*y*y*Ow*w*", &buf, &bad, &bounds, &table_object, &wide, &flags))
        return NULL;
    int has_table = table_object != Py_None;
    PyObject *result = NULL;
    if (has_table && PyObject_GetBuffer(table_object, &table, PyBUF_SIMPLE) < 0) {
        has_table = -1;
        goto done;
    }
    int64_t count = (int64_t)bad.len;
    const int64_t *starts = bounds.buf;
    if (buf.len != count * CHUNK_SIZE || bounds.len != (count + 1) * 8 || (has_table && table.len < 1)) {
        PyErr_SetString(PyExc_ValueError, "keys: buffer sizes do not match the chunk count");
        goto done;
    }
    int64_t n = starts[count];
    for (int64_t c = 0; c < count; c++)
        if (starts[c] < 0 || starts[c] > starts[c + 1])
            n = -1;
    if (n < 0 || wide.len != ROWS_WIDE * 8 * n || flags.len != ROWS_FLAGS * n) {
        PyErr_SetString(PyExc_ValueError, "keys: output sizes do not match the record count");
        goto done;
    }
    Bytes b = {buf.buf, buf.len};
    const uint8_t *is_bad = bad.buf;
    const uint8_t *ids = has_table ? table.buf : NULL;
    int64_t tlen = has_table ? (int64_t)table.len : 0;
    int64_t *owner = wide.buf, *offsets = owner + n, *sizes = offsets + n, *record_ids = sizes + n;
    int64_t *written = record_ids + n, *event_ids = written + n, *provider_at = event_ids + n;
    int64_t *provider_len = provider_at + n, *template_at = provider_len + n;
    uint8_t *unsure = flags.buf, *candidate = unsure + n;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t c = 0; c < count && !failed; c++) {
        if (is_bad[c])
            continue;
        /* A chunk walk() accounted for: its records chain from 512. */
        int64_t base = c * CHUNK_SIZE, at = base + CHUNK_HEADER_SIZE;
        for (int64_t r = starts[c]; r < starts[c + 1]; r++) {
            int fine = 1;
            int64_t size = (int64_t)get(b, at + 4, 4, &fine);
            record_ids[r] = (int64_t)get(b, at + 8, 8, &fine);
            written[r] = (int64_t)get(b, at + 16, 8, &fine);
            if (!fine || size < MIN_RECORD_SIZE || at + size > base + CHUNK_SIZE) {
                failed = 1; /* not a chunk walk() accounted for */
                break;
            }
            Keys k = record_keys(b, at, size, base, ids, tlen);
            owner[r] = c;
            offsets[r] = at;
            sizes[r] = size;
            event_ids[r] = k.event_id;
            provider_at[r] = k.provider_at;
            provider_len[r] = k.provider_len;
            template_at[r] = k.template_at;
            unsure[r] = k.unsure;
            candidate[r] = k.candidate;
            at += size;
        }
    }
    Py_END_ALLOW_THREADS
    if (failed)
        PyErr_SetString(PyExc_ValueError, "keys: the chunks are not the ones walk() accounted for");
    else
        result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&bad);
    PyBuffer_Release(&bounds);
    PyBuffer_Release(&wide);
    PyBuffer_Release(&flags);
    if (has_table == 1)
        PyBuffer_Release(&table);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "walk(buf, ends, bad, bounds) -> records: the chunks' record headers."},
    {"keys", keys, METH_VARARGS, "keys(buf, bad, bounds, id_table, wide, flags): each record's keys."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_scanc",
    .m_doc = "scan_batch compiled (see scan.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scanc(void) { return PyModule_Create(&module); }
