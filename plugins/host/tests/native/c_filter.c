/* A FerroMQ native plugin written in C from plugin-api/README.md alone. By default a
 * filter accepting messages whose tags start with 'A'; -DKIND=2 makes it a queue
 * selector (message i -> queue i % queues), -DKIND=3 an allocation strategy (queue q ->
 * client q % clients), -DKIND=4 a check-back handler (commit even check counts, roll
 * back odd ones). The test suite also compiles hostile variants with -D flags (wrong
 * ABI version, always failing, slow).
 *
 *   cc -shared -fPIC -O2 -o libc_filter.so c_filter.c
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#ifndef MANIFEST_ABI
#define MANIFEST_ABI 1
#endif
#ifndef VT_ABI
#define VT_ABI 1
#endif
#ifndef ENTRY
#define ENTRY ferromq_plugin_entry_v1
#endif
#ifndef KIND
#define KIND 1
#endif

typedef struct fmq_native_v1 {
    uint32_t abi_version;
    uint32_t struct_size;
    int32_t (*describe)(uint8_t *out, uint32_t out_cap);
    int32_t (*init)(const uint8_t *cfg, uint32_t cfg_len, void **state);
    int32_t (*call)(void *state, const uint8_t *in, uint32_t in_len, uint8_t *out, uint32_t out_cap);
    int32_t (*last_error)(void *state, uint8_t *out, uint32_t out_cap);
    void (*drop)(void *state);
} fmq_native_v1;

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static int32_t describe(uint8_t *out, uint32_t cap) {
    const char *name = "c-filter", *version = "1.0.0";
    uint32_t nl = (uint32_t)strlen(name), vl = (uint32_t)strlen(version), total = 48 + nl + vl;
    if (total > cap) return (int32_t)total;
    memset(out, 0, 48);
    memcpy(out, "FMQM", 4);
    wr32(out + 4, MANIFEST_ABI);  /* abi_version; abi_minor = 0 unless set below */
    out[10] = KIND;               /* kind: 1 filter, 2 selector, 3 allocation, 4 check */
#if KIND == 1
    /* ABI 1.1: the filter reads tags only, so its frames carry no other strings. */
    out[8] = 1;                   /* abi_minor */
    out[12] = 4;                  /* flags: declares_fields */
    out[14] = 2;                  /* fields: tags */
#endif
    wr32(out + 16, total);
    wr32(out + 24, 48);      wr32(out + 28, nl);  /* name */
    wr32(out + 32, 48 + nl); wr32(out + 36, vl);  /* version */
    memcpy(out + 48, name, nl);
    memcpy(out + 48 + nl, version, vl);
    return (int32_t)total;
}

static int32_t init(const uint8_t *cfg, uint32_t len, void **state) {
    (void)len;
    if (memcmp(cfg, "FMQB", 4) != 0) return -2;
    *state = 0;
    return 0;
}

static int32_t call(void *state, const uint8_t *in, uint32_t len, uint8_t *out, uint32_t cap) {
    (void)state; (void)len;
#ifdef FAIL
    return -1;
#endif
#ifdef SLEEP_MS
    usleep(SLEEP_MS * 1000);
#endif
    if (memcmp(in, "FMQB", 4) != 0 || in[4] != 1) return -2;
    uint32_t n = rd32(in + 16), size = rd32(in + 20), at = rd32(in + 24);
    const uint8_t *ctx = in + rd32(in + 28);
#if KIND == 2
    if (in[8] != 3) return -3;
    uint32_t queues = rd32(ctx + 8 + 4);             /* select context: queue table count */
    if (cap < 4 * n || queues == 0) return -4;
    for (uint32_t i = 0; i < n; i++) wr32(out + 4 * i, i % queues);
    return (int32_t)(4 * n);
#elif KIND == 3
    if (in[8] != 4) return -3;
    uint32_t qc = rd32(ctx + 16 + 4), cc = rd32(ctx + 28 + 4), me = rd32(ctx + 40), k = 0;
    for (uint32_t q = 0; q < qc && cc > 0; q++)
        if (q % cc == me) wr32(out + 4 * k++, q);
    return (int32_t)(4 * k);
#elif KIND == 4
    if (in[8] != 5) return -3;
    if (cap < 8 * n) return -4;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t checks = rd32(in + at + i * size + 52);
        memset(out + 8 * i, 0, 8);
        out[8 * i] = (checks & 1) ? 2 : 1;            /* rollback : commit */
    }
    return (int32_t)(8 * n);
#endif
    if (in[8] != 2) return -3; /* filter frames only */
    if (cap < n) return -4;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *rec = in + at + i * size;
        uint32_t off = rd32(rec + 64), tl = rd32(rec + 68);  /* tags span */
        out[i] = tl > 0 && in[off] == 'A';
    }
    return (int32_t)n;
}

static int32_t last_error(void *state, uint8_t *out, uint32_t cap) {
    (void)state;
    const char *m = "the C plugin refuses everything";
    uint32_t l = (uint32_t)strlen(m);
    if (l > cap) l = cap;
    memcpy(out, m, l);
    return (int32_t)l;
}

static const fmq_native_v1 VTABLE = { VT_ABI, sizeof(fmq_native_v1), describe, init, call, last_error, 0 };

const fmq_native_v1 *ENTRY(void) { return &VTABLE; }
