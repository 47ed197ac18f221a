/*
 * A deliberately incomplete batch testee: it checks the libxc Image Header
 * (libxc-migration-stream, "Image Header": marker, id, version, options,
 * reserved; big-endian) and nothing after it.  docs/batch-protocol.md shows
 * what the conformance suite makes of it: every rule of the image header
 * passes, everything past it that must be refused is accepted
 * ("wrong-verdict"), and every other format is skipped ("unsupported").
 *
 *   header_only --batch                  one JSON request a line on stdin,
 *                                        one JSON answer a line on stdout
 *   header_only -f FORMAT -i FILE|FD     one stream (verify-stream-v2's
 *                                        convention: exit 0 accept, 1 reject,
 *                                        2 usage error)
 *
 * Build: cc -O2 -Wall -o header_only header_only.c
 *
 * The requests are flat JSON objects that the runner writes in ASCII
 * (non-ASCII characters as \uXXXX); json_string() below reads one string
 * member of such an object, which is all a testee without a JSON library
 * needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEADER_SIZE 24

/* Read exactly n octets (a pipe or a socket returns them in pieces);
 * returns how many arrived before the end of the stream, or -1. */
static ssize_t read_full(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* NULL when the header is acceptable, else why not (strict role: the
 * reserved fields, which a writer must zero, are refused too). */
static const char *check_header(int fd)
{
    unsigned char h[HEADER_SIZE];
    ssize_t got = read_full(fd, h, sizeof h);
    if (got < 0)
        return "cannot read the stream";
    if (got < HEADER_SIZE)
        return "the stream ends inside the image header";
    if (be(h, 8) != UINT64_MAX)
        return "image header: marker is not 0xFFFFFFFFFFFFFFFF";
    if (be(h + 8, 4) != 0x58454E46)
        return "image header: id is not \"XENF\"";
    uint64_t version = be(h + 12, 4);
    if (version != 2 && version != 3)
        return "image header: version is neither 2 nor 3";
    if (be(h + 16, 2) & 0xfffe)
        return "image header: reserved options bits are set";
    if (be(h + 18, 6) != 0)
        return "image header: reserved field is not zero";
    return NULL;   /* everything after the header is taken on trust */
}

/* The string member "name" of a flat JSON object, unescaped into out;
 * 0 when found.  Enough for the runner's requests, not a JSON parser. */
static int json_string(const char *obj, const char *name, char *out, size_t size)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *p = strstr(obj, key);
    if (!p)
        return -1;
    p += strlen(key);
    while (*p == ' ' || *p == ':')
        p++;
    if (*p++ != '"')
        return -1;
    size_t n = 0;
    while (*p && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            c = *p++;
            switch (c) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                unsigned v;
                if (sscanf(p, "%4x", &v) != 1 || v > 0x7f)
                    return -1;   /* non-ASCII: not needed for this example */
                c = (char)v;
                p += 4;
                break;
            }
            case '"': case '\\': case '/': break;
            default: return -1;
            }
        }
        if (n + 1 >= size)
            return -1;
        out[n++] = c;
    }
    if (*p != '"')
        return -1;
    out[n] = 0;
    return 0;
}

/* Write s as a JSON string. */
static void put_json(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void answer(const char *id, const char *verdict, const char *message)
{
    fputs("{\"id\": ", stdout);
    put_json(id);
    printf(", \"verdict\": \"%s\"", verdict);
    if (message) {
        fputs(", \"message\": ", stdout);
        put_json(message);
    }
    fputs("}\n", stdout);
    fflush(stdout);   /* the runner waits for this line */
}

static int serve(void)
{
    static char line[1 << 16];
    char id[4096], format[64], path[4096];
    while (fgets(line, sizeof line, stdin)) {
        if (json_string(line, "id", id, sizeof id)) {
            fprintf(stderr, "header_only: a request without an id: %.80s\n", line);
            return 2;   /* the runner cannot match an answer: give up */
        }
        if (json_string(line, "format", format, sizeof format) ||
            json_string(line, "path", path, sizeof path)) {
            answer(id, "error", "a request without a format or a path");
            continue;
        }
        if (strcmp(format, "libxc") != 0) {
            answer(id, "unsupported", "only the libxc image header is checked");
            continue;
        }
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            answer(id, "error", strerror(errno));
            continue;
        }
        const char *why = check_header(fd);
        close(fd);
        answer(id, why ? "reject" : "accept", why);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *format = "libxc", *input = "0";
    if (argc == 2 && strcmp(argv[1], "--batch") == 0)
        return serve();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-f") == 0 && i + 1 < argc)
            format = argv[++i];
        else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc)
            input = argv[++i];
        else {
            fprintf(stderr, "usage: %s --batch | -f FORMAT -i FILE|FD\n", argv[0]);
            return 2;
        }
    }
    if (strcmp(format, "libxc") != 0) {
        fprintf(stderr, "%s: format %s is not supported\n", argv[0], format);
        return 2;
    }
    char *end;
    long n = strtol(input, &end, 10);
    int fd = (*input && !*end) ? (int)n : open(input, O_RDONLY);
    if (fd < 0) {
        perror(input);
        return 2;
    }
    const char *why = check_header(fd);
    if (why) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    return 0;
}
