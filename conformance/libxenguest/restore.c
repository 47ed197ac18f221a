/*
 * restore.c: restore one libxc stream with libxenguest's xc_domain_restore.
 *
 *     xenstream-restore [-v] [--remus] [--state FILE] STREAM|-|--fd N
 *
 * The stream comes from STREAM, standard input for "-", or descriptor N,
 * inherited and read from where it stands (a socket, or a file positioned
 * past what is not the stream), as libxl hands its save helper the
 * migration socket or the save file after the xl header.  Domain 1 must
 * exist (under the fakexen shim it does, of the guest type the shim is told).
 * Exit status: 0 the library restored the stream ("Restore successful"),
 * 1 it refused it (its messages on stderr), 2 usage or setup error.
 * --remus restores a checkpointed stream (XC_STREAM_REMUS; each CHECKPOINT
 * record is acknowledged as a successful checkpoint).  --state FILE asks
 * the shim (fakexen_dump_state) for the restored domain's state after a
 * successful restore.  -v logs at debug level.
 *
 * libxl's own helper (libxl-save-helper, --restore-domain) runs the same
 * function but speaks libxl's binary callback protocol on its stdout and
 * needs a toolstack on the other side; this driver is that helper without
 * the protocol.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenguest.h>

static int static_data_done(unsigned int missing, void *data)
{
    (void)data;
    /* libxl applies a default CPU policy for what v2 streams lack; there is
     * nothing for a fake domain to apply */
    (void)missing;
    return 0;
}

static int checkpoint(void *data)
{
    (void)data;
    return XGR_CHECKPOINT_SUCCESS;
}

static void usage(void)
{
    fprintf(stderr, "usage: xenstream-restore [-v] [--remus] [--state FILE] STREAM|-|--fd N\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *state = NULL;
    int verbose = 0, remus = 0, fd = -1, rc, i;
    char *end;
    unsigned long store_mfn = 0, console_mfn = 0;
    struct restore_callbacks cb;
    xentoollog_logger *logger;
    xc_interface *xch;

    for ( i = 1; i < argc; i++ )
    {
        if ( !strcmp(argv[i], "-v") )
            verbose = 1;
        else if ( !strcmp(argv[i], "--remus") )
            remus = 1;
        else if ( !strcmp(argv[i], "--state") && i + 1 < argc )
            state = argv[++i];
        else if ( !strcmp(argv[i], "--fd") && i + 1 < argc && !path && fd < 0 )
        {
            errno = 0;
            fd = (int)strtol(argv[++i], &end, 10);
            if ( errno || *end || end == argv[i] || fd < 0 )
                usage();
            path = argv[i];
        }
        else if ( argv[i][0] == '-' && argv[i][1] )
            usage();
        else if ( path )
            usage();
        else
            path = argv[i];
    }
    if ( !path )
        usage();
    if ( fd >= 0 )
    {
        if ( fcntl(fd, F_GETFD) < 0 )
        {
            fprintf(stderr, "xenstream-restore: descriptor %d: %s\n", fd, strerror(errno));
            return 2;
        }
    }
    else
        fd = strcmp(path, "-") ? open(path, O_RDONLY) : 0;
    if ( fd < 0 )
    {
        fprintf(stderr, "xenstream-restore: %s: %s\n", path, strerror(errno));
        return 2;
    }
    logger = (xentoollog_logger *)xtl_createlogger_stdiostream(
        stderr, verbose ? XTL_DEBUG : XTL_INFO, 0);
    xch = xc_interface_open(logger, NULL, 0);
    if ( !xch )
    {
        fprintf(stderr, "xenstream-restore: xc_interface_open failed: %s\n", strerror(errno));
        return 2;
    }
    memset(&cb, 0, sizeof(cb));
    cb.static_data_done = static_data_done;
    if ( remus )
        cb.checkpoint = checkpoint;
    rc = xc_domain_restore(xch, fd, 1, 1, &store_mfn, 0, 2, &console_mfn, 0,
                           remus ? XC_STREAM_REMUS : XC_STREAM_PLAIN, &cb, -1);
    if ( rc == 0 && state )
    {
        int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "fakexen_dump_state");
        if ( !dump || dump(state) )
        {
            fprintf(stderr, "xenstream-restore: cannot write the domain state to %s%s\n", state,
                    dump ? "" : " (not running under the fakexen shim)");
            return 2;
        }
    }
    xc_interface_close(xch);
    return rc == 0 ? 0 : 1;
}
