/*
 * fs-suite-c: the C (wasi-libc) counterpart of examples/fs-suite, for the tests that compare
 * wasi:filesystem over AFS with stock wasmtime-wasi on a local directory. A wasm32-wasi
 * (preview 1) core module:
 *
 *     clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra \
 *         -o target/wasm32-wasi-c/fs-suite-c.wasm examples/fs-suite-c/fs_suite.c
 *
 * Usage: fs-suite-c all DIR | fs-suite-c bad DIR
 *
 * DIR is the guest path of a preopened directory. Every step prints one line
 * `STEP: ok [RESULT]` or `STEP: err ENAME`; a step whose outcome contradicts what it must do
 * ends with ` UNEXPECTED` and makes the exit code 1. Paths in step names are relative to DIR.
 * Nothing printed depends on inode or device numbers, access times, sub-second times,
 * directory sizes or the order of directory entries.
 *
 * `all DIR`: fopen/fread/fwrite/fseek, open (O_CREAT, O_EXCL, O_TRUNC, O_APPEND), pread,
 * pwrite, lseek, ftruncate, truncate, fsync, fdatasync, stat, fstat, lstat, utimensat,
 * futimens, opendir/readdir (sorted), mkdir, rename, unlink, rmdir, link (within one
 * directory), symlink, readlink, access, on an EMPTY DIR; ends with a dump of the tree.
 *
 * `bad DIR`: hostile paths, like fs-suite's `bad`. Expects from the harness: a directory
 * `DIR/sub` and symlinks `DIR/link-out` -> `../..`, `DIR/link-abs` -> `/etc`, `DIR/link-in`
 * -> `sub` (prints `setup missing NAME` for each one that is absent).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum want { MUST, FAILS, ANY };

static const char *dir;
static int failed;

/* ---------------------------------------------------------------------------------------- */
/* Output helpers */

static const char *errname(int e) {
    static char other[32];
    switch (e) {
#define E(x) case x: return #x;
        E(E2BIG) E(EACCES) E(EAGAIN) E(EBADF) E(EBUSY) E(ECANCELED) E(EDQUOT) E(EEXIST)
        E(EFAULT) E(EFBIG) E(EILSEQ) E(EINVAL) E(EIO) E(EISDIR) E(ELOOP) E(EMFILE) E(EMLINK)
        E(ENAMETOOLONG) E(ENFILE) E(ENODEV) E(ENOENT) E(ENOMEM) E(ENOSPC) E(ENOSYS)
        E(ENOTCAPABLE) E(ENOTDIR) E(ENOTEMPTY) E(ENOTSUP) E(ENXIO) E(EOVERFLOW) E(EPERM)
        E(EROFS) E(ESPIPE) E(ESTALE) E(ETXTBSY) E(EXDEV)
#undef E
    case 0:
        return "(errno not set)";
    default:
        snprintf(other, sizeof other, "E%d", e);
        return other;
    }
}

/* Prints a step: rc < 0 is a failure with errno `err`. Returns rc >= 0. */
static int rep(enum want want, const char *name, long rc, int err, const char *fmt, ...) {
    int ok = rc >= 0, bad = (want == MUST && !ok) || (want == FAILS && ok);
    char detail[512] = "";
    if (ok && fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        detail[0] = ' ';
        vsnprintf(detail + 1, sizeof detail - 1, fmt, ap);
        va_end(ap);
        if (!detail[1])
            detail[0] = 0;
    }
    if (bad)
        failed = 1;
    if (ok)
        printf("%s: ok%s%s\n", name, detail, bad ? " UNEXPECTED" : "");
    else
        printf("%s: err %s%s\n", name, errname(err), bad ? " UNEXPECTED" : "");
    return ok;
}

/* Runs EXPR (a call returning < 0 on error) with errno captured right after it. */
#define STEP(want, name, expr, ...)                                                           \
    ({                                                                                        \
        errno = 0;                                                                            \
        long rc_ = (long)(expr);                                                              \
        int errno_ = errno;                                                                   \
        rep(want, name, rc_, errno_, __VA_ARGS__);                                            \
    })

static void check(const char *name, int good, const char *detail) {
    if (!good)
        failed = 1;
    printf("%s: %s%s%s\n", name, good ? "ok" : "MISMATCH", *detail ? " " : "", detail);
}

/* DIR/rel in one of a few rotating buffers. */
static const char *P(const char *rel) {
    static char bufs[8][4096];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, rel);
    return b;
}

/* pread until len bytes or EOF (pread may return less than asked). */
static ssize_t pread_full(int fd, void *buf, size_t len, off_t off) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static uint32_t sum(const unsigned char *b, size_t n) {
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    return s;
}

static uint32_t fnv(const unsigned char *b, size_t n) {
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x01000193u;
    return h;
}

/* Short contents escaped, longer ones as a digest. Rotating buffers. */
static const char *show(const unsigned char *b, size_t n) {
    static char bufs[4][300];
    static int i;
    char *o = bufs[i++ % 4], *p = o;
    if (n > 64) {
        snprintf(o, 300, "len=%zu sum=%u fnv=%08x", n, sum(b, n), fnv(b, n));
        return o;
    }
    *p++ = '"';
    for (size_t k = 0; k < n; k++) {
        unsigned c = b[k];
        if (c == '\n')
            p += sprintf(p, "\\n");
        else if (c == '"' || c == '\\')
            p += sprintf(p, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            *p++ = (char)c;
        else
            p += sprintf(p, "\\x%02x", c);
    }
    *p++ = '"';
    *p = 0;
    return o;
}

/* show() of a buffer filled by a call that returned n (< 0: nothing, not printed anyway). */
static const char *shown(const void *b, long n) {
    return show(b, n < 0 || !b ? 0 : (size_t)n);
}

static const char *ftype(mode_t m) {
    if (S_ISLNK(m))
        return "symlink";
    if (S_ISDIR(m))
        return "dir";
    if (S_ISREG(m))
        return "file";
    return "other";
}

/* Type and, for non-directories, size. */
static const char *fmt_stat(const struct stat *st) {
    static char b[4][96];
    static int i;
    char *o = b[i++ % 4];
    if (S_ISDIR(st->st_mode))
        snprintf(o, 96, "type=dir");
    else
        snprintf(o, 96, "type=%s size=%lld", ftype(st->st_mode), (long long)st->st_size);
    return o;
}

static void do_stat(enum want want, const char *rel, int follow) {
    struct stat st = {0};
    char name[600];
    snprintf(name, sizeof name, "%s %s", follow ? "stat" : "lstat", rel);
    const char *p = P(rel);
    STEP(want, name, follow ? stat(p, &st) : lstat(p, &st), "%s", fmt_stat(&st));
}

/* Reads a whole file into a malloc'd buffer; returns -1 with errno on failure. */
static long slurp(const char *path, unsigned char **out) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    size_t cap = 4096, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (n == cap)
            b = realloc(b, cap *= 2);
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *out = b;
    return (long)n;
}

/* Reads DIR/rel and prints it; checks it against want (len wn) unless want is NULL. */
static void expect(const char *rel, const void *want, size_t wn) {
    unsigned char *b = NULL;
    char name[600];
    snprintf(name, sizeof name, "read %s", rel);
    long n = 0;
    if (STEP(MUST, name, n = slurp(P(rel), &b), "%s", shown(b, n))) {
        if (want && ((size_t)n != wn || memcmp(b, want, wn) != 0)) {
            snprintf(name, sizeof name, "content %s", rel);
            check(name, 0, show(want, wn));
        }
        free(b);
    }
}
#define EXPECT(rel, lit) expect(rel, lit, sizeof(lit) - 1)

/* Creates or truncates DIR/rel with data (must work). */
static void put(const char *rel, const char *data) {
    char name[600];
    snprintf(name, sizeof name, "put %s", rel);
    int fd;
    if (STEP(MUST, name, fd = open(P(rel), O_WRONLY | O_CREAT | O_TRUNC, 0644), "")) {
        size_t n = strlen(data);
        if (write(fd, data, n) != (ssize_t)n)
            check(name, 0, "short write");
        close(fd);
    }
}

static int cmpstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in a directory (without . and ..); returns the count or -1. */
static long names(const char *path, char ***out) {
    DIR *d = opendir(path);
    if (!d)
        return -1;
    size_t n = 0, cap = 16;
    char **v = malloc(cap * sizeof *v);
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = strdup(e->d_name);
    }
    int err = errno;
    closedir(d);
    if (err) {
        errno = err;
        return -1;
    }
    qsort(v, n, sizeof *v, cmpstr);
    *out = v;
    return (long)n;
}

static void free_names(char **v, long n) {
    for (long i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static const char *dtype(unsigned char t) {
    switch (t) {
    case DT_REG:
        return "file";
    case DT_DIR:
        return "dir";
    case DT_LNK:
        return "symlink";
    case DT_UNKNOWN:
        return "unknown";
    default:
        return "other";
    }
}

/* `name:d_type[:size]` sorted, with lstat's type when it disagrees with d_type. */
static void listing(enum want want, const char *rel) {
    char name[600], out[8192] = "";
    snprintf(name, sizeof name, "listing %s", *rel ? rel : "DIR");
    const char *path = P(rel);
    DIR *d = opendir(path);
    if (!d) {
        rep(want, name, -1, errno, "");
        return;
    }
    char *items[512];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char full[4096], item[600];
        struct stat st = {0};
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        int r = lstat(full, &st);
        const char *dt = dtype(e->d_type);
        int len = snprintf(item, sizeof item, "%s:%s", e->d_name, dt);
        if (r == 0 && strcmp(ftype(st.st_mode), dt))
            len += snprintf(item + len, sizeof item - len, "(lstat:%s)", ftype(st.st_mode));
        if (r == 0 && S_ISREG(st.st_mode))
            snprintf(item + len, sizeof item - len, ":%lld", (long long)st.st_size);
        items[n++] = strdup(item);
    }
    closedir(d);
    qsort(items, n, sizeof *items, cmpstr);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strncat(out, " ", sizeof out - strlen(out) - 1);
        strncat(out, items[i], sizeof out - strlen(out) - 1);
        free(items[i]);
    }
    rep(want, name, 0, 0, "%s", out);
}

/* ---------------------------------------------------------------------------------------- */
/* all */

static void dirs(void) {
    STEP(MUST, "mkdir d", mkdir(P("d"), 0755), "");
    STEP(FAILS, "mkdir d (exists)", mkdir(P("d"), 0755), "");
    STEP(FAILS, "mkdir nodir/x", mkdir(P("nodir/x"), 0755), "");
    STEP(MUST, "mkdir a", mkdir(P("a"), 0755), "");
    STEP(MUST, "mkdir a/b", mkdir(P("a/b"), 0755), "");
    STEP(MUST, "mkdir a/b/c/ (trailing slash)", mkdir(P("a/b/c/"), 0755), "");
    do_stat(MUST, "a/b/c", 1);
    do_stat(MUST, "d/", 1);
    do_stat(MUST, "a/b/..", 1);
}

static void stdio(void) {
    FILE *f;
    char buf[256];
    size_t n = 0;
    if (STEP(MUST, "fopen f1.txt w", (f = fopen(P("f1.txt"), "w")) ? 0 : -1, "")) {
        STEP(MUST, "fwrite f1.txt", fwrite("hello world\n", 1, 12, f) == 12 ? 0 : -1, "");
        STEP(MUST, "fclose f1.txt", fclose(f), "");
    }
    if (STEP(MUST, "fopen f1.txt r", (f = fopen(P("f1.txt"), "r")) ? 0 : -1, "")) {
        STEP(MUST, "fread all", (long)(n = fread(buf, 1, sizeof buf, f)), "%s", shown(buf, (long)n));
        STEP(MUST, "fseek SEEK_SET 6", fseek(f, 6, SEEK_SET), "ftell=%ld", ftell(f));
        STEP(MUST, "fread 5", (long)(n = fread(buf, 1, 5, f)), "%s", shown(buf, (long)n));
        STEP(MUST, "fseek SEEK_CUR -3", fseek(f, -3, SEEK_CUR), "ftell=%ld", ftell(f));
        STEP(MUST, "fseek SEEK_END -1", fseek(f, -1, SEEK_END), "ftell=%ld", ftell(f));
        STEP(MUST, "fread rest", (long)(n = fread(buf, 1, sizeof buf, f)), "%s", shown(buf, (long)n));
        STEP(MUST, "feof", feof(f) ? 0 : -1, "");
        STEP(FAILS, "fputs on r stream", fputs("x", f) == EOF || fflush(f) ? -1 : 0, "");
        fclose(f);
    }
    EXPECT("f1.txt", "hello world\n");
    if (STEP(MUST, "fopen f2.txt w", (f = fopen(P("f2.txt"), "w")) ? 0 : -1, "")) {
        fputs("first\n", f);
        fclose(f);
    }
    if (STEP(MUST, "fopen f2.txt a", (f = fopen(P("f2.txt"), "a")) ? 0 : -1, "")) {
        fputs("second\n", f);
        fclose(f);
    }
    EXPECT("f2.txt", "first\nsecond\n");
    if (STEP(MUST, "fopen f2.txt r+", (f = fopen(P("f2.txt"), "r+")) ? 0 : -1, "")) {
        fseek(f, 2, SEEK_SET);
        fwrite("XY", 1, 2, f);
        fclose(f);
    }
    EXPECT("f2.txt", "fiXYt\nsecond\n");
    if (STEP(MUST, "fopen f2.txt a+", (f = fopen(P("f2.txt"), "a+")) ? 0 : -1, "")) {
        fputs("third\n", f);
        fseek(f, 0, SEEK_SET);
        n = fread(buf, 1, sizeof buf, f);
        printf("fread after fseek 0 on a+: %s\n", shown(buf, (long)n));
        fclose(f);
    }
    EXPECT("f2.txt", "fiXYt\nsecond\nthird\n");
    STEP(FAILS, "fopen missing r", fopen(P("missing"), "r") ? 0 : -1, "");
    STEP(FAILS, "fopen d w (a dir)", fopen(P("d"), "w") ? 0 : -1, "");
}

static void flags(void) {
    int fd;
    if (STEP(MUST, "open excl O_CREAT|O_EXCL", fd = open(P("excl"), O_WRONLY | O_CREAT | O_EXCL, 0644), "")) {
        write(fd, "first", 5);
        close(fd);
    }
    STEP(FAILS, "open excl O_CREAT|O_EXCL (exists)", open(P("excl"), O_WRONLY | O_CREAT | O_EXCL, 0644), "");
    STEP(FAILS, "open d O_CREAT|O_EXCL (a dir)", open(P("d"), O_WRONLY | O_CREAT | O_EXCL, 0644), "");
    EXPECT("excl", "first");
    if (STEP(MUST, "open app O_APPEND|O_CREAT", fd = open(P("app"), O_WRONLY | O_CREAT | O_APPEND, 0644), "")) {
        STEP(MUST, "write one", write(fd, "one\n", 4), "");
        STEP(MUST, "lseek 0", lseek(fd, 0, SEEK_SET), "");
        STEP(MUST, "write two (after lseek 0)", write(fd, "two\n", 4), "");
        close(fd);
    }
    EXPECT("app", "one\ntwo\n");
    if (STEP(MUST, "open app O_APPEND", fd = open(P("app"), O_WRONLY | O_APPEND), "")) {
        STEP(MUST, "write three", write(fd, "three\n", 6), "");
        close(fd);
    }
    EXPECT("app", "one\ntwo\nthree\n");
    if (STEP(MUST, "open app O_TRUNC", fd = open(P("app"), O_WRONLY | O_TRUNC), "")) {
        struct stat st = {0};
        STEP(MUST, "fstat app", fstat(fd, &st), "%s", fmt_stat(&st));
        close(fd);
    }
    EXPECT("app", "");
    STEP(FAILS, "open missing O_RDONLY", open(P("missing"), O_RDONLY), "");
    STEP(FAILS, "open missing O_WRONLY (no O_CREAT)", open(P("missing"), O_WRONLY), "");
    if (STEP(MUST, "open f1.txt O_RDONLY", fd = open(P("f1.txt"), O_RDONLY), "")) {
        STEP(FAILS, "write on O_RDONLY fd", write(fd, "x", 1), "");
        close(fd);
    }
    if (STEP(MUST, "open f1.txt O_WRONLY", fd = open(P("f1.txt"), O_WRONLY), "")) {
        char c;
        STEP(FAILS, "read on O_WRONLY fd", read(fd, &c, 1), "");
        close(fd);
    }
}

static void positional(void) {
    int fd;
    char buf[64];
    ssize_t n = 0;
    if (!STEP(MUST, "open off.bin O_RDWR|O_CREAT", fd = open(P("off.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644), ""))
        return;
    STEP(MUST, "write 0123456789", write(fd, "0123456789", 10), "n=%d", 10);
    STEP(MUST, "pread 4 at 3", n = pread(fd, buf, 4, 3), "%s", shown(buf, n));
    STEP(MUST, "lseek SEEK_CUR 0 (pread keeps the offset)", lseek(fd, 0, SEEK_CUR), "pos=%lld",
         (long long)lseek(fd, 0, SEEK_CUR));
    STEP(MUST, "pwrite ab at 2", pwrite(fd, "ab", 2, 2), "");
    STEP(MUST, "pwrite zz at 15", pwrite(fd, "zz", 2, 15), "");
    STEP(MUST, "lseek SEEK_CUR 0 (pwrite keeps the offset)", lseek(fd, 0, SEEK_CUR), "pos=%lld",
         (long long)lseek(fd, 0, SEEK_CUR));
    STEP(MUST, "pread 20 at 0", n = pread_full(fd, buf, 20, 0), "%s", shown(buf, n));
    STEP(MUST, "pread at 100 (past end)", n = pread(fd, buf, 4, 100), "n=%zd", n);
    STEP(MUST, "lseek SEEK_END 0", lseek(fd, 0, SEEK_END), "pos=%lld", (long long)lseek(fd, 0, SEEK_CUR));
    STEP(MUST, "lseek SEEK_SET 3", lseek(fd, 3, SEEK_SET), "");
    STEP(MUST, "read 2", n = read(fd, buf, 2), "%s", shown(buf, n));
    STEP(FAILS, "lseek SEEK_CUR -1000", lseek(fd, -1000, SEEK_CUR), "");
    STEP(MUST, "lseek SEEK_CUR 0", lseek(fd, 0, SEEK_CUR), "pos=%lld", (long long)lseek(fd, 0, SEEK_CUR));
    STEP(MUST, "pwrite end at 70000", pwrite(fd, "end", 3, 70000), "");
    struct stat st = {0};
    STEP(MUST, "fstat off.bin", fstat(fd, &st), "%s", fmt_stat(&st));
    unsigned char *all = malloc(70003);
    if (STEP(MUST, "pread 70003 at 0", n = pread_full(fd, all, 70003, 0), "len=%zd", n)) {
        int zeros = n == 70003;
        for (ssize_t i = 17; zeros && i < 70000; i++)
            zeros = all[i] == 0;
        check("hole reads as zeros", zeros, show(all, (size_t)n));
    }
    free(all);
    STEP(MUST, "ftruncate 4", ftruncate(fd, 4), "");
    STEP(MUST, "fstat", fstat(fd, &st), "%s", fmt_stat(&st));
    STEP(MUST, "ftruncate 20", ftruncate(fd, 20), "");
    STEP(MUST, "pread 30 at 0", n = pread_full(fd, buf, 30, 0), "%s", shown(buf, n));
    STEP(MUST, "fsync", fsync(fd), "");
    STEP(MUST, "fdatasync", fdatasync(fd), "");
    close(fd);
    STEP(MUST, "truncate off.bin 6", truncate(P("off.bin"), 6), "");
    EXPECT("off.bin", "01ab\0\0");
    if (STEP(MUST, "open off.bin O_RDONLY", fd = open(P("off.bin"), O_RDONLY), "")) {
        STEP(FAILS, "ftruncate on O_RDONLY fd", ftruncate(fd, 1), "");
        STEP(FAILS, "pwrite on O_RDONLY fd", pwrite(fd, "x", 1, 0), "");
        close(fd);
    }
}

static void stats_and_times(void) {
    struct stat st = {0};
    do_stat(MUST, "f1.txt", 1);
    do_stat(MUST, "f1.txt", 0);
    do_stat(MUST, "d", 1);
    do_stat(FAILS, "missing", 1);
    do_stat(FAILS, "nodir/x", 1);
    do_stat(FAILS, "f1.txt/x", 1);
    do_stat(FAILS, "f1.txt/", 1);
    STEP(MUST, "access f1.txt F_OK", access(P("f1.txt"), F_OK), "");
    STEP(FAILS, "access missing F_OK", access(P("missing"), F_OK), "");

    put("time", "time");
    struct timespec ts[2] = {{1200000000, 0}, {1000000000, 500000000}};
    STEP(MUST, "utimensat time mtime=1000000000.5", utimensat(AT_FDCWD, P("time"), ts, 0), "");
    STEP(MUST, "stat time", stat(P("time"), &st), "mtime=%lld", (long long)st.st_mtim.tv_sec);
    struct timespec omit[2] = {{0, UTIME_OMIT}, {1100000000, 0}};
    STEP(MUST, "utimensat time atime=OMIT mtime=1100000000", utimensat(AT_FDCWD, P("time"), omit, 0), "");
    STEP(MUST, "stat time", stat(P("time"), &st), "mtime=%lld", (long long)st.st_mtim.tv_sec);
    int fd;
    if (STEP(MUST, "open time O_RDWR", fd = open(P("time"), O_RDWR), "")) {
        struct timespec t3[2] = {{0, UTIME_OMIT}, {1300000000, 0}};
        STEP(MUST, "futimens mtime=1300000000", futimens(fd, t3), "");
        STEP(MUST, "fstat time", fstat(fd, &st), "mtime=%lld", (long long)st.st_mtim.tv_sec);
        STEP(MUST, "write TIME", write(fd, "TIME", 4), "");
        close(fd);
    }
    long long age = 0;
    STEP(MUST, "stat time after write",
         (stat(P("time"), &st) ? -1 : (age = (long long)time(NULL) - (long long)st.st_mtim.tv_sec, 0)),
         "recent=%s", age > -600 && age < 600 ? "true" : "false");
    STEP(MUST, "mkdir td", mkdir(P("td"), 0755), "");
    STEP(ANY, "utimensat td mtime=1000000000.5", utimensat(AT_FDCWD, P("td"), ts, 0), "");
    STEP(MUST, "stat td", stat(P("td"), &st), "mtime-is-set=%s",
         st.st_mtim.tv_sec == 1000000000 ? "true" : "false");
    STEP(FAILS, "utimensat missing", utimensat(AT_FDCWD, P("missing"), ts, 0), "");
}

static void readdirs(void) {
    STEP(MUST, "mkdir ls", mkdir(P("ls"), 0755), "");
    put("ls/b.txt", "bbb");
    put("ls/a.txt", "a");
    put("ls/Z", "zz");
    put("ls/.hidden", "");
    STEP(MUST, "mkdir ls/c", mkdir(P("ls/c"), 0755), "");
    STEP(MUST, "symlink ls/l -> a.txt", symlink("a.txt", P("ls/l")), "");
    listing(MUST, "ls");
    DIR *d;
    if (STEP(MUST, "opendir ls", (d = opendir(P("ls"))) ? 0 : -1, "")) {
        int a = 0, b = 0;
        while (readdir(d))
            a++;
        rewinddir(d);
        while (readdir(d))
            b++;
        check("rewinddir gives the same count", a == b, "");
        closedir(d);
    }
    STEP(FAILS, "opendir f1.txt", opendir(P("f1.txt")) ? 0 : -1, "");
    STEP(FAILS, "opendir missing", opendir(P("missing")) ? 0 : -1, "");
    STEP(MUST, "mkdir many", mkdir(P("many"), 0755), "");
    int bad = 0;
    for (int i = 0; i < 300; i++) {
        char rel[32], data[8];
        snprintf(rel, sizeof rel, "many/e%03d", i);
        snprintf(data, sizeof data, "e%03d", i);
        int fd = open(P(rel), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, data, 4) != 4)
            bad++;
        if (fd >= 0)
            close(fd);
    }
    check("create many/e000..e299", bad == 0, "");
    char **v;
    long n;
    if (STEP(MUST, "readdir many", n = names(P("many"), &v), "count=%ld first=%s last=%s", n,
             n > 0 ? v[0] : "-", n > 0 ? v[n - 1] : "-"))
        free_names(v, n);
    for (int i = 0; i < 300; i += 3) {
        char rel[32];
        snprintf(rel, sizeof rel, "many/e%03d", i);
        if (unlink(P(rel)))
            bad++;
    }
    check("unlink every third of many", bad == 0, "");
    if (STEP(MUST, "readdir many", n = names(P("many"), &v), "count=%ld first=%s last=%s", n,
             n > 0 ? v[0] : "-", n > 0 ? v[n - 1] : "-"))
        free_names(v, n);
}

static void renames(void) {
    put("r1", "r");
    STEP(MUST, "rename r1 r2", rename(P("r1"), P("r2")), "");
    STEP(FAILS, "access r1", access(P("r1"), F_OK), "");
    STEP(MUST, "rename r2 d/r3", rename(P("r2"), P("d/r3")), "");
    STEP(MUST, "rename d/r3 r4", rename(P("d/r3"), P("r4")), "");
    STEP(MUST, "rename r4 r4 (itself)", rename(P("r4"), P("r4")), "");
    EXPECT("r4", "r");
    put("o1", "new");
    put("o2", "old");
    STEP(MUST, "rename o1 o2 (over a file)", rename(P("o1"), P("o2")), "");
    EXPECT("o2", "new");
    STEP(MUST, "rename a a2 (dir)", rename(P("a"), P("a2")), "");
    do_stat(MUST, "a2/b/c", 1);
    STEP(FAILS, "rename a2 a2/b/inside (into itself)", rename(P("a2"), P("a2/b/inside")), "");
    STEP(MUST, "mkdir e1", mkdir(P("e1"), 0755), "");
    STEP(MUST, "mkdir e2", mkdir(P("e2"), 0755), "");
    STEP(ANY, "rename e1 e2 (dir over empty dir)", rename(P("e1"), P("e2")), "");
    STEP(FAILS, "rename e2 a2 (dir over non-empty dir)", rename(P("e2"), P("a2")), "");
    STEP(FAILS, "rename f1.txt d (file over dir)", rename(P("f1.txt"), P("d")), "");
    STEP(FAILS, "rename d o2 (dir over file)", rename(P("d"), P("o2")), "");
    STEP(FAILS, "rename missing x", rename(P("missing"), P("x")), "");
}

static void removes(void) {
    put("rm", "x");
    STEP(MUST, "unlink rm", unlink(P("rm")), "");
    STEP(FAILS, "unlink rm (gone)", unlink(P("rm")), "");
    STEP(FAILS, "unlink d (a dir)", unlink(P("d")), "");
    STEP(FAILS, "rmdir a2 (not empty)", rmdir(P("a2")), "");
    STEP(FAILS, "rmdir o2 (a file)", rmdir(P("o2")), "");
    STEP(FAILS, "rmdir missing", rmdir(P("missing")), "");
    STEP(MUST, "mkdir empty", mkdir(P("empty"), 0755), "");
    STEP(MUST, "rmdir empty", rmdir(P("empty")), "");
    put("unlinked", "still here");
    int fd;
    if (STEP(MUST, "open unlinked", fd = open(P("unlinked"), O_RDONLY), "")) {
        char buf[32];
        ssize_t n = 0;
        STEP(MUST, "unlink unlinked (open)", unlink(P("unlinked")), "");
        STEP(ANY, "read via fd", n = read(fd, buf, sizeof buf), "%s", shown(buf, n));
        close(fd);
    }
}

static void links(void) {
    put("h1", "link me");
    STEP(MUST, "link h1 h2", link(P("h1"), P("h2")), "");
    int fd;
    if (STEP(MUST, "open h2 O_APPEND", fd = open(P("h2"), O_WRONLY | O_APPEND), "")) {
        write(fd, "!", 1);
        close(fd);
    }
    EXPECT("h1", "link me!");
    STEP(FAILS, "link h1 h2 (exists)", link(P("h1"), P("h2")), "");
    STEP(FAILS, "link d dlink (a dir)", link(P("d"), P("dlink")), "");
    STEP(FAILS, "link missing h3", link(P("missing"), P("h3")), "");
    STEP(MUST, "unlink h1", unlink(P("h1")), "");
    EXPECT("h2", "link me!");

    char buf[512];
    ssize_t n = 0;
    STEP(MUST, "symlink sl -> f1.txt", symlink("f1.txt", P("sl")), "");
    STEP(MUST, "readlink sl", n = readlink(P("sl"), buf, sizeof buf), "%s", shown(buf, n));
    STEP(MUST, "readlink sl into 3 bytes", n = readlink(P("sl"), buf, 3), "%s", shown(buf, n));
    do_stat(MUST, "sl", 0);
    do_stat(MUST, "sl", 1);
    EXPECT("sl", "hello world\n");
    STEP(FAILS, "symlink sl -> other (exists)", symlink("other", P("sl")), "");
    STEP(ANY, "open sl O_NOFOLLOW", open(P("sl"), O_RDONLY | O_NOFOLLOW), "");
    STEP(MUST, "symlink dangle -> nope", symlink("nope", P("dangle")), "");
    do_stat(FAILS, "dangle", 1);
    do_stat(MUST, "dangle", 0);
    STEP(MUST, "symlink sld -> d", symlink("d", P("sld")), "");
    listing(MUST, "sld");
    STEP(MUST, "symlink d/up -> ../f1.txt", symlink("../f1.txt", P("d/up")), "");
    EXPECT("d/up", "hello world\n");
    STEP(MUST, "symlink loop1 -> loop2", symlink("loop2", P("loop1")), "");
    STEP(MUST, "symlink loop2 -> loop1", symlink("loop1", P("loop2")), "");
    STEP(FAILS, "open loop1", open(P("loop1"), O_RDONLY), "");
    STEP(FAILS, "readlink f1.txt (a file)", readlink(P("f1.txt"), buf, sizeof buf), "");
    STEP(FAILS, "readlink d (a dir)", readlink(P("d"), buf, sizeof buf), "");
    STEP(FAILS, "readlink missing", readlink(P("missing"), buf, sizeof buf), "");
    STEP(MUST, "rename sl sl2", rename(P("sl"), P("sl2")), "");
    STEP(MUST, "unlink sl2", unlink(P("sl2")), "");
    STEP(MUST, "access f1.txt F_OK", access(P("f1.txt"), F_OK), "");
    STEP(FAILS, "rmdir sld (a link to a dir)", rmdir(P("sld")), "");
}

static void wrong_kinds(void) {
    int fd;
    STEP(FAILS, "open d O_WRONLY (a dir)", open(P("d"), O_WRONLY), "");
    STEP(FAILS, "open d O_RDWR (a dir)", open(P("d"), O_RDWR), "");
    if (STEP(ANY, "open d O_RDONLY (a dir)", fd = open(P("d"), O_RDONLY), "")) {
        char c;
        STEP(FAILS, "read on a dir fd", read(fd, &c, 1), "");
        close(fd);
    }
    if (STEP(MUST, "open d O_DIRECTORY", fd = open(P("d"), O_RDONLY | O_DIRECTORY), ""))
        close(fd);
    STEP(FAILS, "open f1.txt O_DIRECTORY", open(P("f1.txt"), O_RDONLY | O_DIRECTORY), "");
    STEP(FAILS, "open f1.txt/ (trailing slash)", open(P("f1.txt/"), O_RDONLY), "");
    STEP(FAILS, "open newfile/ O_CREAT (trailing slash)", open(P("newfile/"), O_WRONLY | O_CREAT, 0644), "");
    STEP(FAILS, "access newfile", access(P("newfile"), F_OK), "");
    STEP(FAILS, "mkdir f1.txt (a file)", mkdir(P("f1.txt"), 0755), "");
    do_stat(MUST, "./f1.txt", 1);
    do_stat(MUST, "d/../f1.txt", 1);
    do_stat(MUST, "d//up", 1);
}

static void big(void) {
    size_t n = (1u << 20) + 123;
    unsigned char *data = malloc(n), *got = NULL;
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)((i * 7) ^ (i >> 9));
    printf("big data: %s\n", show(data, n));
    FILE *f;
    if (STEP(MUST, "fopen big.bin w", (f = fopen(P("big.bin"), "w")) ? 0 : -1, "")) {
        size_t w = 0;
        for (size_t off = 0; off < n; off += 999)
            w += fwrite(data + off, 1, n - off < 999 ? n - off : 999, f);
        STEP(MUST, "fclose big.bin", fclose(f) == 0 && w == n ? 0 : -1, "written=%zu", w);
    }
    long r = 0;
    if (STEP(MUST, "read big.bin", r = slurp(P("big.bin"), &got), "%s", shown(got, r))) {
        check("big.bin == data", (size_t)r == n && !memcmp(got, data, n), "");
        free(got);
    }
    free(data);
}

static void tree_walk(const char *path, const char *rel) {
    char **v;
    long n = names(path, &v);
    if (n < 0) {
        printf("tree: %s: err %s UNEXPECTED\n", rel, errname(errno));
        failed = 1;
        return;
    }
    int all_files = 1;
    for (long i = 0; i < n; i++) {
        char full[4096];
        struct stat st = {0};
        snprintf(full, sizeof full, "%s/%s", path, v[i]);
        if (lstat(full, &st) || !S_ISREG(st.st_mode))
            all_files = 0;
    }
    if (n > 20 && all_files) {
        uint32_t s = 0;
        size_t total = 0;
        for (long i = 0; i < n; i++) {
            char full[4096];
            unsigned char *b = NULL;
            snprintf(full, sizeof full, "%s/%s", path, v[i]);
            long k = slurp(full, &b);
            if (k > 0) {
                s += sum(b, (size_t)k);
                total += (size_t)k;
            }
            free(b);
        }
        printf("tree: %s/ %ld entries, total=%zu sum=%u\n", rel, n, total, s);
        free_names(v, n);
        return;
    }
    for (long i = 0; i < n; i++) {
        char full[4096], r[4096];
        struct stat st = {0};
        snprintf(full, sizeof full, "%s/%s", path, v[i]);
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", v[i]);
        if (lstat(full, &st)) {
            printf("tree: %s: err %s\n", r, errname(errno));
            continue;
        }
        if (S_ISLNK(st.st_mode)) {
            char t[4096];
            ssize_t k = readlink(full, t, sizeof t - 1);
            t[k < 0 ? 0 : k] = 0;
            printf("tree: %s -> %s\n", r, t);
        } else if (S_ISDIR(st.st_mode)) {
            printf("tree: %s/\n", r);
            tree_walk(full, r);
        } else {
            unsigned char *b = NULL;
            long k = slurp(full, &b);
            printf("tree: %s %s\n", r, k < 0 ? errname(errno) : show(b, (size_t)k));
            free(b);
        }
    }
    free_names(v, n);
}

static void all(void) {
    char **v;
    long n = names(dir, &v);
    if (n != 0) {
        printf("start: DIR is not empty or unreadable UNEXPECTED\n");
        failed = 1;
        return;
    }
    printf("start: ok empty\n");
    dirs();
    stdio();
    flags();
    positional();
    stats_and_times();
    readdirs();
    renames();
    removes();
    links();
    wrong_kinds();
    big();
    tree_walk(dir, "");
}

/* ---------------------------------------------------------------------------------------- */
/* bad */

static void bad(void) {
    struct stat st = {0};
    static const char *setup[] = {"sub", "link-out", "link-abs", "link-in"};
    for (int i = 0; i < 4; i++) {
        int dir_wanted = i == 0;
        if (lstat(P(setup[i]), &st) || (dir_wanted ? !S_ISDIR(st.st_mode) : !S_ISLNK(st.st_mode)))
            printf("setup missing %s\n", setup[i]);
    }
    put("bad.txt", "bad");
    STEP(FAILS, "open DIR/../x O_CREAT", open(P("../x"), O_WRONLY | O_CREAT, 0644), "");
    do_stat(FAILS, "..", 1);
    do_stat(FAILS, "../x", 1);
    STEP(FAILS, "opendir DIR/..", opendir(P("..")) ? 0 : -1, "");
    STEP(FAILS, "open DIR/../../etc/passwd", open(P("../../etc/passwd"), O_RDONLY), "");
    STEP(FAILS, "open /etc/passwd", open("/etc/passwd", O_RDONLY), "");
    STEP(FAILS, "stat /etc", stat("/etc", &st), "");
    STEP(FAILS, "open /tmp/fs-suite-c-escape O_CREAT", open("/tmp/fs-suite-c-escape", O_WRONLY | O_CREAT, 0644), "");
    do_stat(FAILS, "a/../../..", 1);
    do_stat(FAILS, "sub/../../..", 1);
    do_stat(FAILS, "sub/../..", 1);
    do_stat(MUST, "sub/..", 1);
    do_stat(MUST, "./sub/.", 1);
    STEP(FAILS, "rename DIR/bad.txt DIR/../bad.txt", rename(P("bad.txt"), P("../bad.txt")), "");
    STEP(FAILS, "link DIR/bad.txt DIR/../bad.txt", link(P("bad.txt"), P("../bad.txt")), "");
    STEP(FAILS, "mkdir DIR/../newdir", mkdir(P("../newdir"), 0755), "");
    STEP(FAILS, "unlink DIR/../bad.txt", unlink(P("../bad.txt")), "");
    STEP(FAILS, "symlink DIR/../sl -> bad.txt", symlink("bad.txt", P("../sl")), "");
    static const int lens[] = {255, 256, 1000};
    for (int i = 0; i < 3; i++) {
        char name[1100], step[128];
        memset(name, 'n', (size_t)lens[i]);
        name[lens[i]] = 0;
        enum want w = i == 0 ? ANY : FAILS;
        int fd;
        snprintf(step, sizeof step, "open O_CREAT name of %d bytes", lens[i]);
        if (STEP(w, step, fd = open(P(name), O_WRONLY | O_CREAT, 0644), ""))
            close(fd);
        snprintf(step, sizeof step, "stat name of %d bytes", lens[i]);
        STEP(w, step, stat(P(name), &st), "");
        memset(name, 'm', (size_t)lens[i]);
        snprintf(step, sizeof step, "mkdir name of %d bytes", lens[i]);
        STEP(w, step, mkdir(P(name), 0755), "");
        rmdir(P(name));
        memset(name, 'n', (size_t)lens[i]);
        unlink(P(name));
    }
    char buf[512];
    ssize_t n = 0;
    STEP(ANY, "readlink link-out", n = readlink(P("link-out"), buf, sizeof buf), "%s", shown(buf, n));
    do_stat(FAILS, "link-out", 1);
    STEP(FAILS, "opendir link-out", opendir(P("link-out")) ? 0 : -1, "");
    STEP(FAILS, "open DIR/link-out/x", open(P("link-out/x"), O_RDONLY), "");
    STEP(FAILS, "open DIR/link-out/x O_CREAT", open(P("link-out/x"), O_WRONLY | O_CREAT, 0644), "");
    STEP(ANY, "readlink link-abs", n = readlink(P("link-abs"), buf, sizeof buf), "%s", shown(buf, n));
    do_stat(FAILS, "link-abs", 1);
    STEP(FAILS, "open DIR/link-abs/passwd", open(P("link-abs/passwd"), O_RDONLY), "");
    STEP(FAILS, "open DIR/link-abs/x O_CREAT", open(P("link-abs/x"), O_WRONLY | O_CREAT, 0644), "");
    do_stat(ANY, "link-in", 0);
    do_stat(MUST, "link-in", 1);
    put("link-in/x", "through link-in");
    EXPECT("sub/x", "through link-in");
    listing(MUST, "link-in");
    do_stat(FAILS, "link-in/../link-out/x", 1);
    do_stat(FAILS, "link-in/../..", 1);
    STEP(ANY, "symlink mk-abs -> /etc/passwd", symlink("/etc/passwd", P("mk-abs")), "");
    STEP(FAILS, "open DIR/mk-abs", open(P("mk-abs"), O_RDONLY), "");
    STEP(ANY, "symlink mk-out -> ../../../../etc/passwd", symlink("../../../../etc/passwd", P("mk-out")), "");
    STEP(FAILS, "open DIR/mk-out", open(P("mk-out"), O_RDONLY), "");
    STEP(FAILS, "open DIR/mk-out O_WRONLY|O_CREAT", open(P("mk-out"), O_WRONLY | O_CREAT, 0644), "");
    unlink(P("mk-abs"));
    unlink(P("mk-out"));
    listing(MUST, "");
}

/*
 * The component model's allocator, for when this module runs as a component through the
 * preview1 adapter (as afs-wasm runs wasm32-wasip1 modules). Newer wasi-libc exports one;
 * Debian's (2022) does not, and without it wit-component gives the adapter a page-granular
 * allocator of its own on memory.grow, whose pages this wasi-libc's malloc then takes for part
 * of its heap once it grows (the adapter's state gets overwritten: "assertion failed at adapter
 * line ..." in fd_write after a large malloc).
 */
__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *ptr, size_t old_size,
                                                                 size_t align, size_t new_size) {
    void *ret = old_size == 0 ? aligned_alloc(align, new_size) : realloc(ptr, new_size);
    if (!ret && new_size)
        abort();
    return ret;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "all") && strcmp(argv[1], "bad"))) {
        fprintf(stderr, "usage: fs-suite-c all|bad DIR\n");
        return 2;
    }
    dir = argv[2];
    /* Line-buffered regardless of what stdout is, so the transcript interleaves with
       nothing and survives a trap. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(argv[1], "all"))
        all();
    else
        bad();
    fflush(stdout);
    return failed ? 1 : 0;
}
