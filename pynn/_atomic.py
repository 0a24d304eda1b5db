"""Atomic file writes: ``atomic_open(path)`` writes a locked temp file beside ``path`` and renames
it into place only when the write succeeded, so readers see the old file or the new one, never a
torn one (models, checkpoints, reports, predictions)."""
import contextlib
import os
import re
import time


# Temporary files of a save are named ".<target name>.<16 hex digits>.pynn-tmp" beside the target
# (pynn before these locked temps named them ".<target name>.<8 chars>.tmp", unlocked: those are
# swept too once nothing has written them for _OLD_TEMP_AGE seconds). Why unique names plus a
# lock, not one fixed temp name per target: two processes saving one target at once would truncate
# and write the same fixed temp file and then rename the mix of both into place (a corrupt model),
# and a lock file to prevent that would itself be a second file lying beside the model forever.
# Instead every save writes its own temp file while holding an exclusive flock on it; the kernel
# drops that lock when the writer dies, even by SIGKILL. So each save first sweeps the temps of
# its own target whose lock it can take (their writer is dead; a live writer's are left alone) and
# a crash leaves at most the one temp of the save it interrupted, removed by the next save.
# Without fcntl (Windows) nothing is swept, and saves stay atomic.
_TMP_SUFFIX = ".pynn-tmp"
_OLD_TEMP_AGE = 600


def _tmp_pattern(base):
    """Matches the temps of target ``base``; group "old" for the older, unlocked kind
    (tempfile.mkstemp's 8 characters)."""
    return re.compile(re.escape(f".{base}.") + r"(?:[0-9a-f]{16}" + re.escape(_TMP_SUFFIX)
                      + r"|(?P<old>[a-z0-9_]{8}\.tmp))\Z")


def _lock_nowait(fd):
    """Try an exclusive flock on ``fd`` without waiting: True (taken), False (another process
    holds it) or None (no flock on this system or filesystem)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _sweep_stale_temps(directory, base):
    """Remove temps of target ``base`` left by dead writers (their flock is free)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return  # cannot tell a live writer's temp from a dead one's: leave them all
    pattern = _tmp_pattern(base)
    try:
        found = [m for m in map(pattern.match, os.listdir(directory)) if m]
    except OSError:
        return
    for match in found:
        tmp = os.path.join(directory, match.group(0))
        try:
            # read-write: NFS emulates flock with fcntl locks, which need it for LOCK_EX
            fd = os.open(tmp, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue  # gone already (renamed into place or swept by another save)
        try:
            # Locked: its writer is alive. Free: the writer died; unlink it unless the name now
            # points at another file (it was renamed over the target in between). No locks on
            # this filesystem: nothing tells a live writer from a dead one, so keep it. An older
            # pynn never locked its temps: only its silence (no write for _OLD_TEMP_AGE) says
            # that writer is gone.
            st = os.fstat(fd)
            if match.group("old") and time.time() - st.st_mtime < _OLD_TEMP_AGE:
                continue
            if _lock_nowait(fd) is True and os.stat(tmp).st_ino == st.st_ino:
                os.unlink(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)


def _create_locked_temp(directory, base, mode_bits):
    """Create and exclusively lock a new temp file for target ``base``; returns (fd, path)."""
    import secrets

    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(
        os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(8)}{_TMP_SUFFIX}")
        try:
            # 0o666 & ~umask, like a plain open() (mkstemp would make every model 0600)
            fd = os.open(tmp, flags, 0o666 if mode_bits is None else 0o600)
        except FileExistsError:
            continue
        try:
            # A concurrent sweep may have taken the unlocked file between create and lock and
            # unlinked it: then this name is not ours any more; take another. (None: no locks
            # here, and no sweeping either.)
            if _lock_nowait(fd) is not False and os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                if mode_bits is not None:
                    os.fchmod(fd, mode_bits)  # a save keeps the target's permissions
                return fd, tmp
        except OSError:
            pass
        os.close(fd)
    raise FileExistsError(f"{os.path.join(directory, base)}: cannot create a temporary file")


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); best effort where directories cannot be opened."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


@contextlib.contextmanager
def atomic_open(path, mode="wb", **kwargs):
    """Open a temporary file beside ``path``; when the block ends without an error it is
    flushed, fsynced and renamed over ``path``, else removed. Readers see the old file or the
    whole new one, never half of it.

    A process killed mid-save (even by SIGKILL) leaves the old file intact plus at most one
    temporary file, which the next save of the same path removes. An OSError while writing
    (disk full, permission denied) is raised naming ``path``, and the old file is left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        mode_bits = os.stat(path).st_mode & 0o7777
    except OSError:
        mode_bits = None
    tmp = None
    try:
        _sweep_stale_temps(directory, base)
        fd, tmp = _create_locked_temp(directory, base, mode_bits)
        try:
            f = os.fdopen(fd, mode, **kwargs)
        except BaseException:
            os.close(fd)
            raise
        # The lock lives as long as the descriptor, so the rename happens before the close: a
        # sweep never sees this temp unlocked. (Windows cannot rename an open file, but has no
        # sweep either.)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if os.name != "nt":
                os.replace(tmp, path)
                tmp = None
        if tmp is not None:
            os.replace(tmp, path)
            tmp = None
        _fsync_directory(directory)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename != path:
            # "[Errno 28] No space left on device", or a temp file's name, does not say which
            # save failed. Same errno, so the same OSError subclass (PermissionError, ...).
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}; the previous file "
                                     f"(if any) is unchanged", path) from exc
        raise
