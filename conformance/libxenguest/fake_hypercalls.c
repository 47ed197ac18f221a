/*
 * fake_hypercalls.c: a fake Xen hypervisor for running Xen's own restore code
 * (libxenguest's xc_domain_restore) with no hypervisor.
 *
 * Loaded with LD_PRELOAD, it takes the place of the libraries below
 * libxenctrl: libxencall (xencall_open ... xencall5, hypercall buffers),
 * libxenforeignmemory (map, map2, unmap, map_resource ...), and the open and
 * close calls of libxendevicemodel, libxenevtchn and libxengnttab.  The real
 * libxenctrl and libxenguest run unmodified above it: every hypercall they
 * make arrives in fakexen_hypercall(), the dispatcher.
 *
 * The domain being restored (domid 1) exists before the restore, paused, of
 * the guest type named by XENSTREAM_FAKEXEN_GUEST (hvm, the default, or pv).
 * Guest memory is one sparse memfd of machine frames: a foreign mapping is a
 * window onto it, so every page the library writes lands in the fake guest.
 * PV guests get machine frames back from populate_physmap, and the
 * machine-to-physical table the PV restore reads lives in the same memfd.
 *
 * Two judges, kept apart: the library's own checks print its own messages;
 * where this fake hypervisor refuses something (a check that a real Xen
 * makes, cited from xen/arch/x86 or xen/common of the release the shim is
 * built for), it prints one line
 *
 *     fakexen: refused: CHECK-ID: what was wrong [source: file, function]
 *
 * on stderr before returning Xen's error, so that nobody takes our
 * emulation for Xen's restore code.  A hypercall it does not emulate prints
 *
 *     fakexen: unhandled: what
 *
 * and fails with ENOSYS.
 *
 * Environment: XENSTREAM_FAKEXEN_GUEST (hvm|pv), XENSTREAM_FAKEXEN_VCPUS
 * (default 8), XENSTREAM_FAKEXEN_MAX_PAGES (default 0x20000),
 * XENSTREAM_FAKEXEN_TRACE (1: every hypercall on stderr).
 * fakexen_dump_state(path) writes the restored domain's state (see
 * conformance/libxenguest/state.py for the format).
 *
 * Written for Xen 4.17 and 4.20 (Debian 12 and 13): built with that
 * release's public headers (-D__XEN_TOOLS__).
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <execinfo.h>

#include <xen/xen.h>
#include <xen/domctl.h>
#include <xen/memory.h>
#include <xen/version.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/hvm/save.h>
#include <xen/grant_table.h>
#include <xen/sched.h>
#include <xen/foreign/x86_32.h>
#include <xen/foreign/x86_64.h>

/* memory_op's continuation encoding (xen/include/public/memory.h, Xen-internal there) */
#ifndef MEMOP_EXTENT_SHIFT
#define MEMOP_EXTENT_SHIFT 6
#define MEMOP_CMD_MASK ((1UL << MEMOP_EXTENT_SHIFT) - 1)
#endif

#define FX_PAGE_SHIFT 12
#define FX_PAGE_SIZE (1UL << FX_PAGE_SHIFT)
#define FX_EXPORT __attribute__((visibility("default")))

/* Machine frames of the fake host.  max_ram_page frames in all; the M2P
 * (8 octets per frame) fills M2P_FRAMES frames from M2P_BASE. */
#define MAX_MFN        0x40000UL                 /* 1 GiB of machine memory */
#define M2P_FRAMES     (MAX_MFN * 8 / FX_PAGE_SIZE)   /* 512: one 2 MiB chunk */
#define M2P_BASE       0x1000UL
#define COMPAT_M2P     (M2P_BASE + M2P_FRAMES)   /* 256 frames of 4-octet entries */
#define SHINFO_MFN     (COMPAT_M2P + 256)
#define GNTTAB_MFN     (SHINFO_MFN + 1)
#define FIRST_GUEST_MFN 0x2000UL
#define GPFN_LIMIT     0x100000UL                /* HVM gfns: 4 GiB */
#define DOMID          1
#define OWNER_NONE     0
#define OWNER_GUEST    1
#define OWNER_XEN      2

#define NR_PARAMS HVM_NR_PARAMS

enum { VC_BASIC, VC_EXTENDED, VC_XSAVE, VC_MSRS };

struct blob { void *p; size_t n; };

static struct fx {
    bool ready;
    bool hvm;
    bool trace;
    unsigned int vcpus;
    unsigned int width;          /* PV guest width in octets */
    uint64_t max_pages, tot_pages;
    int memfd;
    uint8_t *owner;              /* per mfn */
    uint8_t *ptype;              /* per mfn: page-table level it is validated as (0: none) */
    uint32_t *writable;          /* per mfn: writable mappings from validated L1s */
    uint8_t *pinned;             /* per mfn: pinned level */
    uint32_t *p2m;               /* HVM: gfn -> mfn (0: unpopulated) */
    uint64_t max_gpfn;           /* highest gfn/pfn populated */
    uint64_t next_mfn;
    uint64_t *m2p;               /* mapped M2P frames */
    /* what the restore set, for the state check */
    FILE *log;                   /* tmpfile of events, replayed into the dump */
    uint64_t params[NR_PARAMS];
    bool address_size_set;
    const char *last_refusal;
} fx = { .memfd = -1 };

/* ------------------------------------------------------------------ */
/* Output                                                              */

static void fx_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fx_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fakexen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static char refusal_buf[512];

/* A check of Xen's, failed: say so, and return Xen's error. */
static long refuse(long err, const char *id, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static long refuse(long err, const char *id, const char *source, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(refusal_buf, sizeof(refusal_buf), "%s: %s [source: %s]", id, msg, source);
    fx.last_refusal = refusal_buf;
    fprintf(stderr, "fakexen: refused: %s\n", refusal_buf);
    return -err;
}

static long unhandled(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long unhandled(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "fakexen: unhandled: %s\n", msg);
    return -ENOSYS;
}

/* Events the state dump replays: tag, then payload. */
static void event(const char tag[4], const void *a, size_t an, const void *b, size_t bn)
{
    uint32_t len = an + bn;
    if ( !fx.log )
        return;
    fwrite(tag, 1, 4, fx.log);
    fwrite(&len, 4, 1, fx.log);
    if ( an )
        fwrite(a, 1, an, fx.log);
    if ( bn )
        fwrite(b, 1, bn, fx.log);
}

/* A crash of the library under test: its backtrace before the default
 * action, so that a finding can name the function. */
static void on_fatal(int sig)
{
    void *frames[48];
    int n = backtrace(frames, 48);
    static const char head[] = "fakexen: fatal signal in the process under test; backtrace:\n";
    ssize_t r = write(2, head, sizeof(head) - 1);
    (void)r;
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ------------------------------------------------------------------ */
/* The domain                                                          */

static unsigned long env_ulong(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    if ( !v || !*v )
        return dflt;
    return strtoul(v, NULL, 0);
}

FX_EXPORT int fakexen_reset(int hvm, unsigned int vcpus, unsigned long max_pages);

static void fx_init(void)
{
    const char *g;
    if ( fx.ready )
        return;
    g = getenv("XENSTREAM_FAKEXEN_GUEST");
    fx.trace = env_ulong("XENSTREAM_FAKEXEN_TRACE", 0) != 0;
    if ( fakexen_reset(!(g && !strcmp(g, "pv")), env_ulong("XENSTREAM_FAKEXEN_VCPUS", 8),
                       env_ulong("XENSTREAM_FAKEXEN_MAX_PAGES", 0x20000)) )
    {
        fx_log("cannot set up guest memory: %s", strerror(errno));
        abort();
    }
    if ( getenv("XENSTREAM_FAKEXEN_NO_BACKTRACE") == NULL )
    {
        signal(SIGSEGV, on_fatal);
        signal(SIGBUS, on_fatal);
        signal(SIGFPE, on_fatal);
        signal(SIGILL, on_fatal);
        signal(SIGABRT, on_fatal);
    }
}

static void *frame_map(uint64_t mfn, int prot)
{
    void *p = mmap(NULL, FX_PAGE_SIZE, prot, MAP_SHARED, fx.memfd, mfn << FX_PAGE_SHIFT);
    return p == MAP_FAILED ? NULL : p;
}

/* (Re)create the domain: exported so that the dispatcher can be tested
 * without libxenguest. */
FX_EXPORT int fakexen_reset(int hvm, unsigned int vcpus, unsigned long max_pages)
{
    uint64_t i;
    if ( fx.memfd >= 0 )
        close(fx.memfd);
    free(fx.owner); free(fx.ptype); free(fx.writable); free(fx.pinned); free(fx.p2m);
    if ( fx.m2p )
        munmap(fx.m2p, M2P_FRAMES * FX_PAGE_SIZE);
    if ( fx.log )
        fclose(fx.log);
    bool trace = fx.trace;
    memset(&fx, 0, sizeof(fx));
    fx.trace = trace;
    fx.memfd = syscall(SYS_memfd_create, "fakexen-guest-memory", 0);
    if ( fx.memfd < 0 || ftruncate(fx.memfd, MAX_MFN << FX_PAGE_SHIFT) )
        return -1;
    fx.hvm = hvm;
    fx.vcpus = vcpus ? vcpus : 1;
    fx.width = 8;
    fx.max_pages = max_pages;
    fx.owner = calloc(MAX_MFN, 1);
    fx.ptype = calloc(MAX_MFN, 1);
    fx.pinned = calloc(MAX_MFN, 1);
    fx.writable = calloc(MAX_MFN, sizeof(uint32_t));
    fx.p2m = calloc(GPFN_LIMIT, sizeof(uint32_t));
    fx.log = tmpfile();
    if ( !fx.owner || !fx.ptype || !fx.pinned || !fx.writable || !fx.p2m || !fx.log )
        return -1;
    for ( i = M2P_BASE; i < GNTTAB_MFN + 1; i++ )
        fx.owner[i] = OWNER_XEN;
    fx.owner[SHINFO_MFN] = OWNER_GUEST;    /* shared with the guest, mapped by the toolstack */
    fx.m2p = mmap(NULL, M2P_FRAMES * FX_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                  fx.memfd, M2P_BASE << FX_PAGE_SHIFT);
    if ( fx.m2p == MAP_FAILED )
        return -1;
    memset(fx.m2p, 0xff, M2P_FRAMES * FX_PAGE_SIZE);   /* INVALID_M2P_ENTRY */
    fx.next_mfn = FIRST_GUEST_MFN;
    fx.ready = true;
    return 0;
}

FX_EXPORT const char *fakexen_last_refusal(void)
{
    return fx.last_refusal ? fx.last_refusal : "";
}

static bool guest_mfn(uint64_t mfn)
{
    return mfn < MAX_MFN && fx.owner[mfn] == OWNER_GUEST;
}

/* The machine frame behind a frame number the toolstack uses for the guest:
 * a gfn for an HVM guest, an mfn for a PV guest.  0 when there is none. */
static uint64_t guest_frame(uint64_t frame)
{
    if ( fx.hvm )
        return frame < GPFN_LIMIT ? fx.p2m[frame] : 0;
    return guest_mfn(frame) ? frame : 0;
}

static int populate_one(uint64_t gpfn, uint64_t *mfn_out)
{
    uint64_t mfn;
    if ( fx.tot_pages >= fx.max_pages )
        return refuse(ENOMEM, "memory.max_pages", "xen/common/page_alloc.c, assign_pages",
                      "d%d: populating pfn %#" PRIx64 " exceeds max_pages %" PRIu64,
                      DOMID, gpfn, fx.max_pages);
    if ( fx.hvm )
    {
        if ( gpfn >= GPFN_LIMIT )
            return refuse(EINVAL, "memory.gfn_range", "xen/common/memory.c, populate_physmap",
                          "gfn %#" PRIx64 " is beyond the guest's physical address space",
                          gpfn);
        if ( fx.p2m[gpfn] )
        {   /* already populated: Xen frees and replaces; keep it */
            *mfn_out = fx.p2m[gpfn];
            return 0;
        }
    }
    if ( fx.next_mfn >= MAX_MFN )
        return refuse(ENOMEM, "memory.host_full", "xen/common/page_alloc.c, alloc_domheap_pages",
                      "the fake host's %lu frames are used up", MAX_MFN);
    mfn = fx.next_mfn++;
    fx.owner[mfn] = OWNER_GUEST;
    fx.tot_pages++;
    if ( fx.hvm )
        fx.p2m[gpfn] = mfn;
    fx.m2p[mfn] = gpfn;              /* populate_physmap keeps the M2P (set_gpfn_from_mfn) */
    if ( gpfn > fx.max_gpfn )
        fx.max_gpfn = gpfn;
    *mfn_out = mfn;
    return 0;
}

/* ------------------------------------------------------------------ */
/* memory_op                                                           */

static long memory_op(unsigned long cmd, void *arg)
{
    unsigned long op = cmd & MEMOP_CMD_MASK;
    switch ( op )
    {
    case XENMEM_populate_physmap:
    case XENMEM_increase_reservation:
    {
        struct xen_memory_reservation *r = arg;
        xen_pfn_t *ext = (xen_pfn_t *)(uintptr_t)r->extent_start.p;
        unsigned long i;
        if ( r->domid != DOMID )
            return refuse(ESRCH, "memory.domain", "xen/common/memory.c, do_memory_op",
                          "no domain %u", r->domid);
        if ( r->extent_order != 0 )
            return unhandled("memory_op %lu with extent order %u", op, r->extent_order);
        for ( i = cmd >> MEMOP_EXTENT_SHIFT; i < r->nr_extents; i++ )
        {
            uint64_t mfn = 0;
            long rc = populate_one(op == XENMEM_populate_physmap ? ext[i] : 0, &mfn);
            if ( rc )
                return i ? (long)i : rc;
            if ( !fx.hvm || op == XENMEM_increase_reservation )
                ext[i] = mfn;
        }
        return r->nr_extents;
    }
    case XENMEM_decrease_reservation:
    {
        struct xen_memory_reservation *r = arg;
        return r->nr_extents;   /* nothing to give back in a fake */
    }
    case XENMEM_maximum_ram_page:
        return MAX_MFN;
    case XENMEM_current_reservation:
        return fx.tot_pages;
    case XENMEM_maximum_reservation:
        return fx.max_pages;
    case XENMEM_maximum_gpfn:
        return fx.max_gpfn;
    case XENMEM_machphys_mfn_list:
    {
        struct xen_machphys_mfn_list *l = arg;
        xen_pfn_t *ext = (xen_pfn_t *)(uintptr_t)l->extent_start.p;
        if ( l->max_extents >= 1 )
            ext[0] = M2P_BASE;        /* one 2 MiB chunk */
        l->nr_extents = l->max_extents >= 1 ? 1 : 0;
        return 0;
    }
    case XENMEM_machphys_compat_mfn_list:
    {
        struct xen_machphys_mfn_list *l = arg;
        xen_pfn_t *ext = (xen_pfn_t *)(uintptr_t)l->extent_start.p;
        if ( l->max_extents >= 1 )
            ext[0] = COMPAT_M2P;
        l->nr_extents = l->max_extents >= 1 ? 1 : 0;
        return 0;
    }
    case XENMEM_add_to_physmap:
    {
        struct xen_add_to_physmap *a = arg;
        if ( !fx.hvm )
            return refuse(EINVAL, "memory.add_to_physmap_pv", "xen/arch/x86/mm.c, xenmem_add_to_physmap",
                          "add_to_physmap for a PV guest");
        if ( a->space == XENMAPSPACE_grant_table && a->gpfn < GPFN_LIMIT )
        {
            fx.p2m[a->gpfn] = GNTTAB_MFN;
            return 0;
        }
        return unhandled("add_to_physmap space %u", a->space);
    }
    case XENMEM_remove_from_physmap:
    {
        struct xen_remove_from_physmap *rm = arg;
        if ( rm->gpfn < GPFN_LIMIT && fx.p2m[rm->gpfn] == GNTTAB_MFN )
            fx.p2m[rm->gpfn] = 0;
        return 0;
    }
    default:
        return unhandled("memory_op %lu", op);
    }
}

/* ------------------------------------------------------------------ */
/* Page tables (PV): pinning validates the tree as Xen does, simplified */

#define PTE_PRESENT 0x1ULL
#define PTE_RW      0x2ULL
#define PTE_PSE     0x80ULL
#define PTE_FRAME   0x000ffffffffff000ULL
#define L4_XEN_FIRST 256
#define L4_XEN_LAST  271

static long validate_table(uint64_t mfn, unsigned int level, unsigned int depth);

static long validate_entry(uint64_t entry, unsigned int level, unsigned int depth, unsigned int idx,
                           uint64_t table)
{
    uint64_t target;
    if ( !(entry & PTE_PRESENT) )
        return 0;
    target = (entry & PTE_FRAME) >> FX_PAGE_SHIFT;
    if ( !guest_mfn(target) )
        return refuse(EINVAL, "mm.foreign_frame", "xen/arch/x86/mm.c, get_page_from_l1e/get_page_from_lNe",
                      "L%u table mfn %#" PRIx64 " entry %u names mfn %#" PRIx64
                      ", which the domain does not own", level, table, idx, target);
    if ( level == 1 )
    {
        if ( entry & PTE_RW )
        {
            if ( fx.ptype[target] )
                return refuse(EINVAL, "mm.writable_pagetable", "xen/arch/x86/mm.c, get_page_type",
                              "L1 table mfn %#" PRIx64 " entry %u maps page-table mfn %#" PRIx64
                              " (L%u) writable", table, idx, target, fx.ptype[target]);
            fx.writable[target]++;
        }
        return 0;
    }
    if ( (level == 2 || level == 3) && (entry & PTE_PSE) )
        return refuse(EINVAL, "mm.superpage", "xen/arch/x86/mm.c, get_page_from_l2e",
                      "L%u table mfn %#" PRIx64 " entry %u is a superpage, which a PV guest "
                      "cannot map", level, table, idx);
    return validate_table(target, level - 1, depth + 1);
}

static long validate_table(uint64_t mfn, unsigned int level, unsigned int depth)
{
    const uint64_t *t;
    unsigned int i, n = 512;
    long rc = 0;
    if ( fx.ptype[mfn] == level )
        return 0;                                /* already validated as this level */
    if ( fx.ptype[mfn] || fx.writable[mfn] )
        return refuse(EINVAL, "mm.type_conflict", "xen/arch/x86/mm.c, get_page_type",
                      "mfn %#" PRIx64 " is wanted as an L%u table but is already %s",
                      mfn, level, fx.ptype[mfn] ? "another level of table" : "mapped writable");
    if ( depth > 4 )
        return refuse(EINVAL, "mm.depth", "xen/arch/x86/mm.c, get_page_type",
                      "page-table tree deeper than four levels");
    t = frame_map(mfn, PROT_READ);
    if ( !t )
        return -ENOMEM;
    if ( level == 3 && fx.width == 4 )
        n = 4;                                   /* PAE: four entries */
    fx.ptype[mfn] = level;
    for ( i = 0; i < n && !rc; i++ )
    {
        if ( level == 4 && i >= L4_XEN_FIRST && i <= L4_XEN_LAST )
            continue;                            /* Xen's slots, filled by Xen */
        rc = validate_entry(t[i], level, depth, i, mfn);
    }
    if ( level == 3 && fx.width == 4 )
        for ( i = 4; i < 512 && !rc; i++ )
            if ( t[i] )
                rc = refuse(EINVAL, "mm.pae_l3", "xen/arch/x86/mm.c, alloc_l3_table",
                            "PAE L3 table mfn %#" PRIx64 " has entry %u set", mfn, i);
    munmap((void *)t, FX_PAGE_SIZE);
    if ( rc )
        fx.ptype[mfn] = 0;
    return rc;
}

struct fx_mmuext_op { uint32_t cmd; uint32_t pad; uint64_t arg1; uint64_t arg2; };

static long mmuext_op(struct mmuext_op *ops, unsigned int count, unsigned int *done, domid_t dom)
{
    unsigned int i;
    for ( i = 0; i < count; i++ )
    {
        unsigned int level = 0;
        uint64_t mfn = ops[i].arg1.mfn;
        long rc;
        switch ( ops[i].cmd )
        {
        case MMUEXT_PIN_L1_TABLE: level = 1; break;
        case MMUEXT_PIN_L2_TABLE: level = 2; break;
        case MMUEXT_PIN_L3_TABLE: level = 3; break;
        case MMUEXT_PIN_L4_TABLE: level = 4; break;
        default:
            return unhandled("mmuext_op cmd %u", ops[i].cmd);
        }
        if ( dom != DOMID && dom != DOMID_SELF )
            return refuse(ESRCH, "mm.domain", "xen/arch/x86/mm.c, do_mmuext_op", "no domain %u", dom);
        if ( fx.hvm )
            return refuse(EINVAL, "mm.pin_hvm", "xen/arch/x86/mm.c, do_mmuext_op",
                          "pinning a page table of an HVM guest");
        if ( level == 4 && fx.width == 4 )
            return refuse(EINVAL, "mm.pin_l4_compat", "xen/arch/x86/mm.c, do_mmuext_op",
                          "MMUEXT_PIN_L4_TABLE for a 32-bit guest");
        if ( !guest_mfn(mfn) )
            return refuse(EINVAL, "mm.pin_foreign", "xen/arch/x86/mm.c, do_mmuext_op",
                          "pinning mfn %#" PRIx64 ", which the domain does not own", mfn);
        if ( fx.pinned[mfn] )
            return refuse(EINVAL, "mm.pin_twice", "xen/arch/x86/mm.c, do_mmuext_op",
                          "mfn %#" PRIx64 " is already pinned", mfn);
        rc = validate_table(mfn, level, 1);
        if ( rc )
            return rc;
        fx.pinned[mfn] = level;
        {
            uint32_t lv = level;
            event("PIN ", &mfn, 8, &lv, 4);
        }
        if ( done )
            *done = i + 1;
    }
    return 0;
}

static long mmu_update(struct mmu_update *req, unsigned int count, unsigned int *done, domid_t dom)
{
    unsigned int i;
    for ( i = 0; i < count; i++ )
    {
        uint64_t ptr = req[i].ptr;
        if ( (ptr & 7) == MMU_MACHPHYS_UPDATE )
        {
            uint64_t mfn = ptr >> FX_PAGE_SHIFT;
            if ( !guest_mfn(mfn) )
                return refuse(EINVAL, "mm.machphys_foreign", "xen/arch/x86/mm.c, do_mmu_update",
                              "MMU_MACHPHYS_UPDATE of mfn %#" PRIx64 ", not the domain's", mfn);
            fx.m2p[mfn] = req[i].val;
        }
        else
            return unhandled("mmu_update command %u", (unsigned)(ptr & 7));
        if ( done )
            *done = i + 1;
    }
    (void)dom;
    return 0;
}

/* ------------------------------------------------------------------ */
/* HVM context (hvm_load, xen/arch/x86/hvm/save.c and the load handlers) */

struct save_type { const char *name; uint32_t size; bool per_vcpu; bool zeroextend; };

static struct save_type save_type(unsigned int code)
{
    struct save_type t = { NULL, 0, false, false };
    switch ( code )
    {
#define T(c, s, pv, ze) case c: t = (struct save_type){ #c, s, pv, ze }; break
    T(1, sizeof(struct hvm_save_header), false, false);
    T(2, sizeof(struct hvm_hw_cpu), true, true);          /* hvm_load_cpu_ctxt: zeroextend */
    T(3, sizeof(struct hvm_hw_vpic), false, false);
    T(4, sizeof(struct hvm_hw_vioapic), false, true);
#if XEN_DOMCTL_INTERFACE_VERSION >= 0x17
    T(5, sizeof(struct hvm_hw_lapic), true, true);        /* 4.20: pending_esr appended */
#else
    T(5, sizeof(struct hvm_hw_lapic), true, false);
#endif
    T(6, sizeof(struct hvm_hw_lapic_regs), true, false);
    T(7, sizeof(struct hvm_hw_pci_irqs), false, false);
    T(8, sizeof(struct hvm_hw_isa_irqs), false, false);
    T(9, sizeof(struct hvm_hw_pci_link), false, false);
    T(10, sizeof(struct hvm_hw_pit), false, false);
    T(11, sizeof(struct hvm_hw_rtc), false, false);
    T(12, sizeof(struct hvm_hw_hpet), false, false);
    T(13, sizeof(struct hvm_hw_pmtimer), false, false);
    T(14, sizeof(struct hvm_hw_mtrr), true, false);
    T(15, sizeof(struct hvm_viridian_domain_context), false, true);
    T(16, 0, true, false);                                  /* CPU_XSAVE: variable */
    T(17, sizeof(struct hvm_viridian_vcpu_context), true, true);
    T(18, sizeof(struct hvm_vmce_vcpu), true, true);
    T(19, sizeof(struct hvm_tsc_adjust), true, false);
    T(20, 0, true, false);                                  /* CPU_MSR: variable */
#undef T
    }
    return t;
}

#define HVMSAVE "xen/arch/x86/hvm/save.c, hvm_load"
#define HVMCPU "xen/arch/x86/hvm/hvm.c, hvm_load_cpu_ctxt"

static long check_hvm_cpu(const struct hvm_hw_cpu *c, unsigned int vcpu)
{
    const uint64_t cr0_reserved = ~0xe005003fULL;   /* HVM_CR0_GUEST_RESERVED_BITS */
    if ( c->pad0 )
        return refuse(EINVAL, "hvm.cpu.pad0", HVMCPU, "vcpu%u: pad0 is %#x", vcpu, c->pad0);
    if ( (c->cr0 & cr0_reserved) || !(c->cr0 & 0x10) || ((c->cr0 & 0x80000001ULL) == 0x80000000ULL) )
        return refuse(EINVAL, "hvm.cpu.cr0", HVMCPU, "vcpu%u: bad CR0 %#" PRIx64, vcpu, c->cr0);
    if ( c->cr4 & ~0x3f77ffULL )     /* outside what any CPU policy allows */
        return refuse(EINVAL, "hvm.cpu.cr4", HVMCPU, "vcpu%u: bad CR4 %#" PRIx64, vcpu, c->cr4);
    if ( c->msr_efer & ~0xd01ULL )
        return refuse(EINVAL, "hvm.cpu.efer", HVMCPU " (hvm_efer_valid)",
                      "vcpu%u: bad EFER %#" PRIx64 " - reserved bits", vcpu, c->msr_efer);
    if ( (c->msr_efer & 0x400) && !((c->msr_efer & 0x100) && (c->cr0 & 0x80000000ULL)) )
        return refuse(EINVAL, "hvm.cpu.efer", HVMCPU " (hvm_efer_valid)",
                      "vcpu%u: bad EFER %#" PRIx64 " - LMA/LME/CR0.PG mismatch", vcpu, c->msr_efer);
    if ( c->flags & ~XEN_X86_FPU_INITIALISED )
        return refuse(EINVAL, "hvm.cpu.flags", HVMCPU, "vcpu%u: bad flags value %#x", vcpu, c->flags);
    if ( c->msr_tsc_aux != (uint32_t)c->msr_tsc_aux )
        return refuse(EINVAL, "hvm.cpu.tsc_aux", HVMCPU, "vcpu%u: bad MSR_TSC_AUX %#" PRIx64,
                      vcpu, c->msr_tsc_aux);
    return 0;
}

/* The decisions of XEN_DOMCTL_sethvmcontext, testable on their own. */
FX_EXPORT long fakexen_check_hvm_context(const uint8_t *data, uint32_t size, unsigned int vcpus)
{
    uint32_t cur = 0;
    const struct hvm_save_descriptor *d;
    struct hvm_save_header hdr;
    d = (const void *)data;
    if ( size < sizeof(*d) || d->typecode != 1 || d->length != sizeof(hdr) ||
         size - sizeof(*d) < sizeof(hdr) )
        return refuse(ENODATA, "hvm.header.missing", HVMSAVE " (hvm_load_entry HEADER)",
                      "the HVM context does not start with a %zu-octet save header",
                      sizeof(hdr));
    memcpy(&hdr, data + sizeof(*d), sizeof(hdr));
    if ( hdr.magic != HVM_FILE_MAGIC )
        return refuse(EINVAL, "hvm.header.magic", "xen/arch/x86/hvm/save.c, arch_hvm_load",
                      "bad magic number %#x", hdr.magic);
    if ( hdr.version != HVM_FILE_VERSION )
        return refuse(EINVAL, "hvm.header.version", "xen/arch/x86/hvm/save.c, arch_hvm_load",
                      "unsupported version %u", hdr.version);
    cur = sizeof(*d) + sizeof(hdr);
    for ( ;; )
    {
        struct save_type t;
        if ( size - cur < sizeof(*d) )
            return refuse(ENODATA, "hvm.end_missing", HVMSAVE,
                          "save did not end with a null entry (%u octets left)", size - cur);
        d = (const void *)(data + cur);
        if ( d->typecode == 0 )
            return 0;
        t = save_type(d->typecode);
        if ( d->typecode > HVM_SAVE_CODE_MAX || !t.name )
            return refuse(EINVAL, "hvm.typecode", HVMSAVE, "unknown entry typecode %u", d->typecode);
        if ( d->length > size - cur - sizeof(*d) )
            return refuse(EINVAL, "hvm.length", "xen/arch/x86/hvm/save.c, _hvm_check_entry",
                          "typecode %u instance %u length %u runs past the end (%u octets left)",
                          d->typecode, d->instance, d->length,
                          (unsigned)(size - cur - sizeof(*d)));
        if ( t.per_vcpu && d->instance >= vcpus )
            return refuse(EINVAL, "hvm.instance", HVMSAVE " (load handlers: hvm_load_instance)",
                          "typecode %u names vcpu%u; the domain has %u", d->typecode,
                          d->instance, vcpus);
        if ( t.size && (t.zeroextend ? d->length > t.size : d->length != t.size) )
            return refuse(EINVAL, "hvm.entry_size", "xen/arch/x86/hvm/save.c, _hvm_check_entry",
                          "expected %s type %u length %u, saw length %u",
                          t.zeroextend ? "zeroextended" : "strict", d->typecode, t.size, d->length);
        if ( d->typecode == 2 )
        {
            struct hvm_hw_cpu c;
            long rc;
            memset(&c, 0, sizeof(c));
            memcpy(&c, d + 1, d->length);
            rc = check_hvm_cpu(&c, d->instance);
            if ( rc )
                return rc;
        }
        cur += sizeof(*d) + d->length;
    }
}

/* ------------------------------------------------------------------ */
/* CPU policy (x86_cpuid_copy_from_buffer, x86_msr_copy_from_buffer)   */

FX_EXPORT long fakexen_check_cpu_policy(const xen_cpuid_leaf_t *leaves, uint32_t nr_leaves,
                                        const xen_msr_entry_t *msrs, uint32_t nr_msrs,
                                        uint32_t *err_leaf, uint32_t *err_subleaf, uint32_t *err_msr)
{
    uint32_t i;
    *err_leaf = *err_subleaf = *err_msr = ~0U;
    for ( i = 0; i < nr_leaves; i++ )
    {
        uint32_t l = leaves[i].leaf, s = leaves[i].subleaf;
        bool ok;
        if ( l <= 0xd )
        {
            switch ( l )
            {
            case 0x4: ok = s < 6; break;    /* CPUID_GUEST_NR_CACHE */
            case 0x7: ok = s < 3; break;    /* CPUID_GUEST_NR_FEAT */
            case 0xb: ok = s < 2; break;    /* CPUID_GUEST_NR_TOPO */
            case 0xd: ok = s < 63; break;   /* CPUID_GUEST_NR_XSTATE */
            default:  ok = s == XEN_CPUID_NO_SUBLEAF; break;
            }
        }
        else if ( l == 0x40000000 || l == 0x40000100 )
            ok = s == XEN_CPUID_NO_SUBLEAF;
        else if ( l >= 0x80000000 && l <= 0x80000021 )
            ok = s == XEN_CPUID_NO_SUBLEAF;
        else
            ok = false;
        if ( !ok )
        {
            *err_leaf = l;
            *err_subleaf = s;
            return refuse(ERANGE, "cpuid.leaf_range", "xen/lib/x86/cpuid.c, x86_cpuid_copy_from_buffer",
                          "leaf %#x subleaf %#x is outside the policy", l, s);
        }
    }
    for ( i = 0; i < nr_msrs; i++ )
    {
        if ( msrs[i].flags )
        {
            *err_msr = msrs[i].idx;
            return refuse(EINVAL, "msr.flags", "xen/lib/x86/msr.c, x86_msr_copy_from_buffer",
                          "MSR %#x has flags %#x (must be zero)", msrs[i].idx, msrs[i].flags);
        }
        if ( msrs[i].idx != 0xce && msrs[i].idx != 0x10a )
        {
            *err_msr = msrs[i].idx;
            return refuse(ERANGE, "msr.index", "xen/lib/x86/msr.c, x86_msr_copy_from_buffer",
                          "MSR %#x is not in the policy", msrs[i].idx);
        }
        if ( msrs[i].idx == 0xce && msrs[i].val != (uint32_t)msrs[i].val )
        {
            *err_msr = msrs[i].idx;
            return refuse(EOVERFLOW, "msr.truncation", "xen/lib/x86/msr.c, x86_msr_copy_from_buffer",
                          "MSR_INTEL_PLATFORM_INFO value %#" PRIx64 " does not fit 32 bits",
                          (uint64_t)msrs[i].val);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* HVM params (hvmop_set_param, hvm_allow_set_param, hvm_set_param)    */

FX_EXPORT long fakexen_check_hvm_param(uint32_t index, uint64_t value, uint64_t old)
{
#define HVMP "xen/arch/x86/hvm/hvm.c, hvm_set_param"
    if ( index >= HVM_NR_PARAMS )
        return refuse(EINVAL, "hvm_param.index", "xen/arch/x86/hvm/hvm.c, hvmop_set_param",
                      "param index %u >= HVM_NR_PARAMS (%u)", index, HVM_NR_PARAMS);
    switch ( index )
    {
    case HVM_PARAM_PAE_ENABLED: case HVM_PARAM_DM_DOMAIN: case HVM_PARAM_MEMORY_EVENT_CR0:
    case HVM_PARAM_MEMORY_EVENT_CR3: case HVM_PARAM_MEMORY_EVENT_CR4:
    case HVM_PARAM_MEMORY_EVENT_INT3: case HVM_PARAM_NESTEDHVM:
    case HVM_PARAM_MEMORY_EVENT_SINGLE_STEP: case HVM_PARAM_BUFIOREQ_EVTCHN:
    case HVM_PARAM_MEMORY_EVENT_MSR:
        return refuse(EINVAL, "hvm_param.deprecated", "xen/arch/x86/hvm/hvm.c, hvm_allow_set_param",
                      "param %u is deprecated", index);
    case HVM_PARAM_VIRIDIAN: case HVM_PARAM_IOREQ_PFN: case HVM_PARAM_BUFIOREQ_PFN:
    case HVM_PARAM_IOREQ_SERVER_PFN: case HVM_PARAM_NR_IOREQ_SERVER_PAGES:
    case HVM_PARAM_ALTP2M: case HVM_PARAM_MCA_CAP:
        if ( old != 0 && value != old )
            return refuse(EEXIST, "hvm_param.set_once", "xen/arch/x86/hvm/hvm.c, hvm_allow_set_param",
                          "param %u is already %#" PRIx64 " and may be set once", index, old);
        break;
    }
    switch ( index )
    {
    case HVM_PARAM_TIMER_MODE:
        if ( value > HVMPTM_one_missed_tick_pending )
            return refuse(EINVAL, "hvm_param.timer_mode", HVMP, "timer mode %" PRIu64, value);
        break;
    case HVM_PARAM_VIRIDIAN:
        if ( (value & ~HVMPV_feature_mask) || !(value & HVMPV_base_freq) )
            return refuse(EINVAL, "hvm_param.viridian", HVMP, "viridian features %#" PRIx64, value);
        break;
    case HVM_PARAM_ACPI_S_STATE:
        if ( value != 0 && value != 3 )
            return refuse(EINVAL, "hvm_param.acpi_s_state", HVMP, "ACPI S state %" PRIu64, value);
        break;
    case HVM_PARAM_ALTP2M:
        if ( value > XEN_ALTP2M_limited )
            return refuse(EINVAL, "hvm_param.altp2m", HVMP, "altp2m mode %" PRIu64, value);
        break;
    case HVM_PARAM_TRIPLE_FAULT_REASON:
        if ( value > SHUTDOWN_MAX )
            return refuse(EINVAL, "hvm_param.triple_fault", HVMP, "reason %" PRIu64, value);
        break;
    case HVM_PARAM_NR_IOREQ_SERVER_PAGES:
        if ( value == 0 || value > 64 )
            return refuse(EINVAL, "hvm_param.ioreq_pages", HVMP, "%" PRIu64 " ioreq server pages", value);
        break;
    case HVM_PARAM_X87_FIP_WIDTH:
        if ( value != 0 && value != 4 && value != 8 )
            return refuse(EINVAL, "hvm_param.x87_fip_width", HVMP, "FIP width %" PRIu64, value);
        break;
    case HVM_PARAM_VM86_TSS:
        if ( value != (uint32_t)value )
            return refuse(EINVAL, "hvm_param.vm86_tss", HVMP, "VM86 TSS %#" PRIx64 " above 4 GiB", value);
        break;
    case HVM_PARAM_VM86_TSS_SIZED:
        if ( (value >> 32) < 104 )   /* sizeof(struct tss32) */
            return refuse(EINVAL, "hvm_param.vm86_tss_sized", HVMP, "VM86 TSS size %" PRIu64,
                          value >> 32);
        break;
    case HVM_PARAM_MCA_CAP:
        if ( value & ~(1ULL << 0) )    /* XEN_HVM_MCA_CAP_LMCE */
            return refuse(EINVAL, "hvm_param.mca_cap", "xen/arch/x86/cpu/mcheck/vmce.c, vmce_enable_mca_cap",
                          "MCA capabilities %#" PRIx64, value);
        break;
    }
    return 0;
#undef HVMP
}

/* ------------------------------------------------------------------ */
/* PV vCPU context (arch_set_info_guest, xen/arch/x86/domain.c)         */

static bool canonical(uint64_t va)
{
    return ((int64_t)va >> 47) == ((int64_t)va >> 63);
}

#define SETINFO "xen/arch/x86/domain.c, arch_set_info_guest"

FX_EXPORT long fakexen_check_vcpu_context(const void *ctxt, unsigned int width, unsigned int vcpu)
{
    if ( width == 8 )
    {
        const struct vcpu_guest_context_x86_64 *c = ctxt;
        uint64_t cr3 = c->ctrlreg[3] >> FX_PAGE_SHIFT;
        unsigned int i;
        const uint64_t addrs[] = { c->user_regs.rip, c->user_regs.rsp, c->kernel_sp,
                                   c->event_callback_eip, c->failsafe_callback_eip,
                                   c->syscall_callback_eip, c->fs_base, c->gs_base_kernel,
                                   c->gs_base_user, c->ldt_base };
        for ( i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++ )
            if ( !canonical(addrs[i]) )
                return refuse(EINVAL, "vcpu.canonical", SETINFO,
                              "vcpu%u: address %#" PRIx64 " is not canonical", vcpu, addrs[i]);
        if ( c->ldt_ents > 8192 || (c->ldt_base & (FX_PAGE_SIZE - 1)) )
            return refuse(EINVAL, "vcpu.ldt", SETINFO, "vcpu%u: LDT base %#" PRIx64 ", %" PRIu64
                          " entries", vcpu, c->ldt_base, c->ldt_ents);
        if ( c->gdt_ents > FIRST_RESERVED_GDT_ENTRY )
            return refuse(EINVAL, "vcpu.gdt_ents", SETINFO, "vcpu%u: %" PRIu64 " GDT entries", vcpu,
                          c->gdt_ents);
        for ( i = 0; i < (c->gdt_ents + 511) / 512; i++ )
            if ( !guest_mfn(c->gdt_frames[i]) )
                return refuse(EINVAL, "vcpu.gdt_frame", "xen/arch/x86/pv/descriptor-tables.c, pv_set_gdt",
                              "vcpu%u: GDT frame %u mfn %#" PRIx64 " is not the domain's", vcpu, i,
                              (uint64_t)c->gdt_frames[i]);
        if ( c->flags & VGCF_online )
        {
            if ( !guest_mfn(cr3) )
                return refuse(EINVAL, "vcpu.cr3", SETINFO,
                              "vcpu%u: CR3 mfn %#" PRIx64 " is not the domain's", vcpu, cr3);
            return validate_table(cr3, 4, 1);   /* get_page_and_type(PGT_root_page_table) */
        }
    }
    else
    {
        const struct vcpu_guest_context_x86_32 *c = ctxt;
        uint64_t cr3 = ((uint32_t)c->ctrlreg[3] >> 12) | ((uint64_t)(uint32_t)c->ctrlreg[3] << 20);
        unsigned int i;
        cr3 &= 0xffffffffULL;
        if ( c->ldt_ents > 8192 || (c->ldt_base & (FX_PAGE_SIZE - 1)) )
            return refuse(EINVAL, "vcpu.ldt", SETINFO, "vcpu%u: LDT base %#x, %u entries", vcpu,
                          c->ldt_base, c->ldt_ents);
        if ( c->gdt_ents > FIRST_RESERVED_GDT_ENTRY )
            return refuse(EINVAL, "vcpu.gdt_ents", SETINFO, "vcpu%u: %u GDT entries", vcpu, c->gdt_ents);
        for ( i = 0; i < (c->gdt_ents + 511) / 512; i++ )
            if ( !guest_mfn(c->gdt_frames[i]) )
                return refuse(EINVAL, "vcpu.gdt_frame", "xen/arch/x86/pv/descriptor-tables.c, pv_set_gdt",
                              "vcpu%u: GDT frame %u mfn %#x is not the domain's", vcpu, i,
                              c->gdt_frames[i]);
        if ( c->flags & VGCF_online )
        {
            if ( !guest_mfn(cr3) )
                return refuse(EINVAL, "vcpu.cr3", SETINFO,
                              "vcpu%u: CR3 mfn %#" PRIx64 " is not the domain's", vcpu, cr3);
            return validate_table(cr3, 3, 1);   /* get_page_and_type(PGT_root_page_table) */
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* domctl                                                              */

static long domctl(struct xen_domctl *d)
{
    if ( d->interface_version != XEN_DOMCTL_INTERFACE_VERSION )
        return refuse(EACCES, "domctl.interface_version", "xen/common/domctl.c, do_domctl",
                      "interface version %#x, this hypervisor speaks %#x",
                      d->interface_version, XEN_DOMCTL_INTERFACE_VERSION);
    if ( d->cmd == XEN_DOMCTL_getdomaininfo )
    {
        struct xen_domctl_getdomaininfo *i = &d->u.getdomaininfo;
        if ( d->domain > DOMID )
            return -ESRCH;
        memset(i, 0, sizeof(*i));
        d->domain = DOMID;
        i->domain = DOMID;
        i->flags = XEN_DOMINF_paused | (fx.hvm ? XEN_DOMINF_hvm_guest | XEN_DOMINF_hap : 0);
        i->tot_pages = fx.tot_pages;
        i->max_pages = fx.max_pages;
        i->shared_info_frame = SHINFO_MFN;
        i->nr_online_vcpus = fx.vcpus;
        i->max_vcpu_id = fx.vcpus - 1;
        i->cpupool = 0;
        return 0;
    }
    if ( d->domain != DOMID )
        return refuse(ESRCH, "domctl.domain", "xen/common/domctl.c, do_domctl", "no domain %u",
                      d->domain);
    switch ( d->cmd )
    {
    case XEN_DOMCTL_get_address_size:
        if ( fx.hvm )
            d->u.address_size.size = 64;
        else
            d->u.address_size.size = fx.width * 8;
        return 0;
    case XEN_DOMCTL_set_address_size:
    {
        uint32_t size = d->u.address_size.size;
        if ( fx.hvm )
            return refuse(EINVAL, "domctl.address_size_hvm", "xen/arch/x86/domctl.c, arch_do_domctl",
                          "set_address_size for an HVM guest");
        if ( size != 32 && size != 64 )
            return refuse(EINVAL, "domctl.address_size", "xen/arch/x86/pv/domain.c, switch_compat",
                          "address size %u", size);
        if ( size == 32 && fx.tot_pages && fx.width == 8 )
            return refuse(EINVAL, "domctl.address_size_late", "xen/arch/x86/pv/domain.c, switch_compat",
                          "switching to 32-bit after memory was populated");
        fx.width = size / 8;
        event("ADDR", &size, 4, NULL, 0);
        return 0;
    }
    case XEN_DOMCTL_settscinfo:
    {
        struct xen_domctl_tsc_info *t = &d->u.tsc_info;
        if ( t->tsc_mode > 2 )
            return refuse(EINVAL, "tsc.mode", "xen/arch/x86/time.c, tsc_set_info",
                          "TSC mode %u", t->tsc_mode);
        event("TSC ", t, sizeof(*t), NULL, 0);
        return 0;
    }
    case XEN_DOMCTL_sethvmcontext:
    {
        uint32_t size = d->u.hvmcontext.size;
        const uint8_t *buf = (const void *)(uintptr_t)d->u.hvmcontext.buffer.p;
        long rc;
        if ( !fx.hvm )
            return refuse(EINVAL, "domctl.hvmcontext_pv", "xen/arch/x86/domctl.c, arch_do_domctl",
                          "sethvmcontext for a PV guest");
        rc = fakexen_check_hvm_context(buf, size, fx.vcpus);
        if ( rc )
            return rc;
        event("HCTX", buf, size, NULL, 0);
        return 0;
    }
    case XEN_DOMCTL_setvcpucontext:
    {
        uint32_t vcpu = d->u.vcpucontext.vcpu;
        const void *c = (const void *)(uintptr_t)d->u.vcpucontext.ctxt.p;
        size_t n = fx.width == 8 ? sizeof(struct vcpu_guest_context_x86_64)
                                 : sizeof(struct vcpu_guest_context_x86_32);
        uint32_t hdr[2] = { vcpu, VC_BASIC };
        long rc;
        if ( vcpu >= fx.vcpus )
            return refuse(EINVAL, "vcpu.id", "xen/common/domctl.c, do_domctl (setvcpucontext)",
                          "vcpu%u; the domain has %u", vcpu, fx.vcpus);
        if ( fx.hvm )
            return unhandled("setvcpucontext for an HVM guest");
        rc = fakexen_check_vcpu_context(c, fx.width, vcpu);
        if ( rc )
            return rc;
        event("VCPU", hdr, 8, c, n);
        return 0;
    }
    case XEN_DOMCTL_set_ext_vcpucontext:
    {
        struct xen_domctl_ext_vcpucontext *e = &d->u.ext_vcpucontext;
        uint32_t hdr[2] = { e->vcpu, VC_EXTENDED };
        if ( e->vcpu >= fx.vcpus )
            return refuse(EINVAL, "vcpu.id", "xen/arch/x86/domctl.c, arch_do_domctl (set_ext_vcpucontext)",
                          "vcpu%u; the domain has %u", e->vcpu, fx.vcpus);
        if ( e->size > sizeof(*e) )
            return refuse(EINVAL, "vcpu.ext_size", "xen/arch/x86/domctl.c, arch_do_domctl (set_ext_vcpucontext)",
                          "size %u > %zu", e->size, sizeof(*e));
        event("VCPU", hdr, 8, e, sizeof(*e));
        return 0;
    }
    case XEN_DOMCTL_setvcpuextstate:
    {
        struct xen_domctl_vcpuextstate *x = &d->u.vcpuextstate;
        const uint64_t *buf = (const void *)(uintptr_t)x->buffer.p;
        uint32_t hdr[2] = { x->vcpu, VC_XSAVE };
        if ( x->vcpu >= fx.vcpus )
            return refuse(EINVAL, "vcpu.id", "xen/arch/x86/domctl.c, arch_do_domctl (setvcpuextstate)",
                          "vcpu%u; the domain has %u", x->vcpu, fx.vcpus);
        if ( x->size < 16 + 512 + 64 )
            return refuse(EINVAL, "vcpu.xsave_size", "xen/arch/x86/domctl.c, arch_do_domctl (setvcpuextstate)",
                          "size %" PRIu64 " is smaller than xcr0, xcr0_accum and an XSAVE legacy area and header",
                          (uint64_t)x->size);
        if ( (buf[0] & ~0x7ULL) || !(buf[0] & 1) || (buf[0] & ~buf[1]) )
            return refuse(EINVAL, "vcpu.xcr0", "xen/arch/x86/domctl.c, arch_do_domctl (setvcpuextstate) / xstate.c, validate_xstate",
                          "xcr0 %#" PRIx64 ", xcr0_accum %#" PRIx64, buf[0], buf[1]);
        event("VCPU", hdr, 8, buf, x->size);
        return 0;
    }
    case XEN_DOMCTL_set_vcpu_msrs:
    {
        struct xen_domctl_vcpu_msrs *m = &d->u.vcpu_msrs;
        const xen_domctl_vcpu_msr_t *e = (const void *)(uintptr_t)m->msrs.p;
        uint32_t hdr[2] = { m->vcpu, VC_MSRS }, i;
        if ( m->vcpu >= fx.vcpus )
            return refuse(EINVAL, "vcpu.id", "xen/arch/x86/domctl.c, arch_do_domctl (set_vcpu_msrs)",
                          "vcpu%u; the domain has %u", m->vcpu, fx.vcpus);
        for ( i = 0; i < m->msr_count; i++ )
        {
            if ( e[i].reserved )
                return refuse(EINVAL, "vcpu.msr_reserved", "xen/arch/x86/domctl.c, arch_do_domctl (set_vcpu_msrs)",
                              "MSR %#x entry has reserved %#x", e[i].index, e[i].reserved);
            if ( e[i].index != 0x48 && e[i].index != 0xc0011019 && e[i].index != 0xc001101a &&
                 e[i].index != 0xc001101b && e[i].index != 0xc0011027 && e[i].index != 0xc0000103 &&
                 e[i].index != 0x10a )
                return refuse(EINVAL, "vcpu.msr_index", "xen/arch/x86/domctl.c, arch_do_domctl (set_vcpu_msrs)",
                              "MSR %#x cannot be set for a PV vCPU", e[i].index);
        }
        event("VCPU", hdr, 8, e, m->msr_count * sizeof(*e));
        return 0;
    }
    case XEN_DOMCTL_set_cpu_policy:
    {
        struct xen_domctl_cpu_policy *p = &d->u.cpu_policy;
        const xen_cpuid_leaf_t *l = (const void *)(uintptr_t)p->leaves.p;
        const xen_msr_entry_t *m = (const void *)(uintptr_t)p->msrs.p;
        uint32_t counts[2] = { p->nr_leaves, p->nr_msrs };
        long rc = fakexen_check_cpu_policy(l, p->nr_leaves, m, p->nr_msrs,
                                           &p->err_leaf, &p->err_subleaf, &p->err_msr);
        if ( rc )
            return rc;
        event("CPUP", counts, 8, l, p->nr_leaves * sizeof(*l));
        event("MSRP", NULL, 0, m, p->nr_msrs * sizeof(*m));
        return 0;
    }
    case XEN_DOMCTL_max_mem:
        fx.max_pages = d->u.max_mem.max_memkb >> 2;
        return 0;
    default:
        return unhandled("domctl %u", d->cmd);
    }
}

static long hvm_op(unsigned long op, void *arg)
{
    struct xen_hvm_param *a = arg;
    switch ( op )
    {
    case HVMOP_set_param:
    {
        long rc;
        if ( a->domid != DOMID )
            return refuse(ESRCH, "hvm_param.domain", "xen/arch/x86/hvm/hvm.c, hvmop_set_param",
                          "no domain %u", a->domid);
        if ( !fx.hvm )
            return refuse(EINVAL, "hvm_param.pv", "xen/arch/x86/hvm/hvm.c, hvmop_set_param",
                          "HVMOP_set_param for a PV guest");
        rc = fakexen_check_hvm_param(a->index, a->value, a->index < NR_PARAMS ? fx.params[a->index] : 0);
        if ( rc )
            return rc;
        fx.params[a->index] = a->value;
        event("PARM", &a->index, 4, &a->value, 8);
        return 0;
    }
    case HVMOP_get_param:
        if ( a->index >= NR_PARAMS )
            return -EINVAL;
        a->value = fx.params[a->index];
        return 0;
    default:
        return unhandled("hvm_op %lu", op);
    }
}

static long xen_version(unsigned long cmd, void *arg)
{
    switch ( cmd )
    {
    case XENVER_version:
        return (XEN_DOMCTL_INTERFACE_VERSION >= 0x17) ? ((4 << 16) | 20) : ((4 << 16) | 17);
    case XENVER_extraversion:
        strcpy(arg, ".0-fakexen");
        return 0;
    case XENVER_capabilities:
        strcpy(arg, "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
        return 0;
    case XENVER_pagesize:
        return FX_PAGE_SIZE;
    case XENVER_get_features:
    {
        xen_feature_info_t *f = arg;
        f->submap = 0;
        return 0;
    }
    case XENVER_platform_parameters:
    {
        xen_platform_parameters_t *p = arg;
        p->virt_start = 0xffff800000000000ULL;
        return 0;
    }
    default:
        return unhandled("xen_version %lu", cmd);
    }
}

/* ------------------------------------------------------------------ */
/* The dispatcher: every hypercall libxenctrl makes                     */

FX_EXPORT long fakexen_hypercall(unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3,
                                 uint64_t a4, uint64_t a5)
{
    long rc;
    fx_init();
    switch ( op )
    {
    case __HYPERVISOR_domctl:
        rc = domctl((void *)(uintptr_t)a1);
        break;
    case __HYPERVISOR_memory_op:
        rc = memory_op(a1, (void *)(uintptr_t)a2);
        break;
    case __HYPERVISOR_hvm_op:
        rc = hvm_op(a1, (void *)(uintptr_t)a2);
        break;
    case __HYPERVISOR_xen_version:
        rc = xen_version(a1, (void *)(uintptr_t)a2);
        break;
    case __HYPERVISOR_mmuext_op:
        rc = mmuext_op((void *)(uintptr_t)a1, a2, (void *)(uintptr_t)a3, a4);
        break;
    case __HYPERVISOR_mmu_update:
        rc = mmu_update((void *)(uintptr_t)a1, a2, (void *)(uintptr_t)a3, a4);
        break;
    case __HYPERVISOR_multicall:
    {
        multicall_entry_t *calls = (void *)(uintptr_t)a1;
        uint64_t i;
        for ( i = 0; i < a2; i++ )
            calls[i].result = fakexen_hypercall(calls[i].op, calls[i].args[0], calls[i].args[1],
                                                calls[i].args[2], calls[i].args[3], calls[i].args[4]);
        rc = 0;
        break;
    }
    default:
        rc = unhandled("hypercall %u", op);
        break;
    }
    (void)a5;
    if ( fx.trace )
        fx_log("hypercall %u (%#" PRIx64 ", %#" PRIx64 ") = %ld", op, a1, a2, rc);
    return rc;
}

/* ------------------------------------------------------------------ */
/* libxencall                                                          */

struct xencall_handle { int dummy; };
static struct xencall_handle the_xcall;

FX_EXPORT struct xencall_handle *xencall_open(void *logger, unsigned int flags)
{
    (void)logger; (void)flags;
    fx_init();
    return &the_xcall;
}

FX_EXPORT int xencall_close(struct xencall_handle *x) { (void)x; return 0; }
FX_EXPORT int xencall_fd(struct xencall_handle *x) { (void)x; return 2; }
FX_EXPORT int xencall_buffers_never_fault(struct xencall_handle *x) { (void)x; return 1; }

static long call_result(long rc)
{
    if ( rc < 0 )
    {
        errno = -rc;
        return -1;
    }
    return rc;
}

FX_EXPORT int xencall0(struct xencall_handle *x, unsigned int op)
{ (void)x; return call_result(fakexen_hypercall(op, 0, 0, 0, 0, 0)); }
FX_EXPORT int xencall1(struct xencall_handle *x, unsigned int op, uint64_t a1)
{ (void)x; return call_result(fakexen_hypercall(op, a1, 0, 0, 0, 0)); }
FX_EXPORT int xencall2(struct xencall_handle *x, unsigned int op, uint64_t a1, uint64_t a2)
{ (void)x; return call_result(fakexen_hypercall(op, a1, a2, 0, 0, 0)); }
FX_EXPORT int xencall3(struct xencall_handle *x, unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3)
{ (void)x; return call_result(fakexen_hypercall(op, a1, a2, a3, 0, 0)); }
FX_EXPORT int xencall4(struct xencall_handle *x, unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3,
                       uint64_t a4)
{ (void)x; return call_result(fakexen_hypercall(op, a1, a2, a3, a4, 0)); }
FX_EXPORT int xencall5(struct xencall_handle *x, unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3,
                       uint64_t a4, uint64_t a5)
{ (void)x; return call_result(fakexen_hypercall(op, a1, a2, a3, a4, a5)); }

FX_EXPORT void *xencall_alloc_buffer_pages(struct xencall_handle *x, size_t nr)
{
    void *p = mmap(NULL, nr * FX_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    (void)x;
    return p == MAP_FAILED ? NULL : p;
}

FX_EXPORT void xencall_free_buffer_pages(struct xencall_handle *x, void *p, size_t nr)
{
    (void)x;
    if ( p )
        munmap(p, nr * FX_PAGE_SIZE);
}

FX_EXPORT void *xencall_alloc_buffer(struct xencall_handle *x, size_t size)
{
    size_t nr = (size + sizeof(size_t) + FX_PAGE_SIZE - 1) / FX_PAGE_SIZE;
    size_t *p = xencall_alloc_buffer_pages(x, nr);
    if ( !p )
        return NULL;
    p[0] = nr;
    return p + 1;
}

FX_EXPORT void xencall_free_buffer(struct xencall_handle *x, void *q)
{
    size_t *p = q;
    if ( !p )
        return;
    p--;
    xencall_free_buffer_pages(x, p, p[0]);
}

/* ------------------------------------------------------------------ */
/* libxenforeignmemory                                                 */

struct xenforeignmemory_handle { int dummy; };
static struct xenforeignmemory_handle the_fmem;

struct xenforeignmemory_resource_handle { void *addr; unsigned long nr; };

FX_EXPORT struct xenforeignmemory_handle *xenforeignmemory_open(void *logger, unsigned int flags)
{
    (void)logger; (void)flags;
    fx_init();
    return &the_fmem;
}

FX_EXPORT int xenforeignmemory_close(struct xenforeignmemory_handle *f) { (void)f; return 0; }
FX_EXPORT int xenforeignmemory_restrict(struct xenforeignmemory_handle *f, domid_t d)
{ (void)f; (void)d; return 0; }

static uint64_t frame_for(uint32_t dom, uint64_t frame)
{
    if ( dom == DOMID_XEN )
        return (frame < MAX_MFN && fx.owner[frame] == OWNER_XEN) ? frame : 0;
    if ( dom != DOMID )
        return 0;
    return guest_frame(frame);
}

FX_EXPORT void *xenforeignmemory_map2(struct xenforeignmemory_handle *f, uint32_t dom, void *addr,
                                      int prot, int flags, size_t num, const xen_pfn_t arr[], int err[])
{
    uint8_t *base;
    size_t i, bad = 0;
    (void)f; (void)flags;
    fx_init();
    if ( num == 0 )
    {
        errno = EINVAL;
        return NULL;
    }
    base = mmap(addr, num * FX_PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ( base == MAP_FAILED )
        return NULL;
    for ( i = 0; i < num; i++ )
    {
        uint64_t mfn = frame_for(dom, arr[i]);
        if ( !mfn || mmap(base + i * FX_PAGE_SIZE, FX_PAGE_SIZE, prot, MAP_SHARED | MAP_FIXED, fx.memfd,
                          mfn << FX_PAGE_SHIFT) == MAP_FAILED )
        {
            bad++;
            if ( err )
                err[i] = -EFAULT;
            continue;
        }
        if ( err )
            err[i] = 0;
    }
    if ( bad && !err )
    {
        munmap(base, num * FX_PAGE_SIZE);
        errno = EFAULT;
        return NULL;
    }
    return base;
}

FX_EXPORT void *xenforeignmemory_map(struct xenforeignmemory_handle *f, uint32_t dom, int prot,
                                     size_t num, const xen_pfn_t arr[], int err[])
{
    return xenforeignmemory_map2(f, dom, NULL, prot, 0, num, arr, err);
}

FX_EXPORT int xenforeignmemory_unmap(struct xenforeignmemory_handle *f, void *addr, size_t num)
{
    (void)f;
    return munmap(addr, num * FX_PAGE_SIZE);
}

FX_EXPORT struct xenforeignmemory_resource_handle *xenforeignmemory_map_resource(
    struct xenforeignmemory_handle *f, domid_t domid, unsigned int type, unsigned int id,
    unsigned long frame, unsigned long nr_frames, void **paddr, int prot, int flags)
{
    struct xenforeignmemory_resource_handle *r;
    void *p;
    (void)f; (void)flags; (void)id;
    fx_init();
    if ( domid != DOMID || type != XENMEM_resource_grant_table || frame != 0 || nr_frames != 1 )
    {
        errno = EOPNOTSUPP;
        return NULL;
    }
    p = mmap(*paddr, FX_PAGE_SIZE, prot, MAP_SHARED | (*paddr ? MAP_FIXED : 0), fx.memfd,
             GNTTAB_MFN << FX_PAGE_SHIFT);
    if ( p == MAP_FAILED )
        return NULL;
    r = malloc(sizeof(*r));
    if ( !r )
    {
        munmap(p, FX_PAGE_SIZE);
        return NULL;
    }
    r->addr = p;
    r->nr = 1;
    *paddr = p;
    return r;
}

FX_EXPORT int xenforeignmemory_unmap_resource(struct xenforeignmemory_handle *f,
                                              struct xenforeignmemory_resource_handle *r)
{
    (void)f;
    if ( r )
    {
        munmap(r->addr, r->nr * FX_PAGE_SIZE);
        free(r);
    }
    return 0;
}

FX_EXPORT int xenforeignmemory_resource_size(struct xenforeignmemory_handle *f, domid_t domid,
                                             unsigned int type, unsigned int id, unsigned long *nr)
{
    (void)f; (void)domid; (void)id;
    if ( type != XENMEM_resource_grant_table )
    {
        errno = EOPNOTSUPP;
        return -1;
    }
    *nr = 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The other handles libxenctrl opens                                   */

struct fx_handle { int dummy; };
static struct fx_handle the_dm, the_evtchn, the_gnttab, the_gntshr;

FX_EXPORT void *xendevicemodel_open(void *l, unsigned int f) { (void)l; (void)f; return &the_dm; }
FX_EXPORT int xendevicemodel_close(void *h) { (void)h; return 0; }
FX_EXPORT void *xenevtchn_open(void *l, unsigned int f) { (void)l; (void)f; return &the_evtchn; }
FX_EXPORT int xenevtchn_close(void *h) { (void)h; return 0; }
FX_EXPORT void *xengnttab_open(void *l, unsigned int f) { (void)l; (void)f; return &the_gnttab; }
FX_EXPORT int xengnttab_close(void *h) { (void)h; return 0; }
FX_EXPORT void *xengntshr_open(void *l, unsigned int f) { (void)l; (void)f; return &the_gntshr; }
FX_EXPORT int xengntshr_close(void *h) { (void)h; return 0; }

/* ------------------------------------------------------------------ */
/* The state of the restored domain                                     */

static void put(FILE *f, const char tag[4], const void *a, size_t an, const void *b, size_t bn)
{
    uint32_t len = an + bn;
    fwrite(tag, 1, 4, f);
    fwrite(&len, 4, 1, f);
    if ( an )
        fwrite(a, 1, an, f);
    if ( bn )
        fwrite(b, 1, bn, f);
}

/* Write the domain's state to `path` (format: conformance/libxenguest/state.py).
 * Returns 0, or -1 with errno. */
FX_EXPORT int fakexen_dump_state(const char *path)
{
    char tmp[4096];
    FILE *f;
    uint64_t i;
    uint32_t meta[4];
    uint8_t *page;
    if ( !fx.ready )
        return -1;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "wb");
    if ( !f )
        return -1;
    fwrite("XSFAKE01", 1, 8, f);
    meta[0] = fx.hvm; meta[1] = fx.width; meta[2] = fx.vcpus; meta[3] = 0;
    put(f, "META", meta, sizeof(meta), NULL, 0);
    /* every populated guest frame: pfn, mfn, contents */
    for ( i = FIRST_GUEST_MFN; i < fx.next_mfn; i++ )
    {
        uint64_t pm[2];
        if ( fx.owner[i] != OWNER_GUEST )
            continue;
        page = frame_map(i, PROT_READ);
        if ( !page )
            goto fail;
        pm[1] = i;
        pm[0] = fx.m2p[i];
        put(f, "PAGE", pm, sizeof(pm), page, FX_PAGE_SIZE);
        munmap(page, FX_PAGE_SIZE);
    }
    if ( !fx.hvm )
    {
        page = frame_map(SHINFO_MFN, PROT_READ);
        if ( !page )
            goto fail;
        put(f, "SHIN", page, FX_PAGE_SIZE, NULL, 0);
        munmap(page, FX_PAGE_SIZE);
    }
    page = frame_map(GNTTAB_MFN, PROT_READ);
    if ( !page )
        goto fail;
    put(f, "GNTT", page, 64, NULL, 0);
    munmap(page, FX_PAGE_SIZE);
    /* the events, in order */
    if ( fx.log )
    {
        char buf[65536];
        size_t n;
        fflush(fx.log);
        rewind(fx.log);
        while ( (n = fread(buf, 1, sizeof(buf), fx.log)) > 0 )
            fwrite(buf, 1, n, f);
    }
    if ( fclose(f) )
        return -1;
    return rename(tmp, path);
 fail:
    fclose(f);
    unlink(tmp);
    return -1;
}
