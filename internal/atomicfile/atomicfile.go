// Package atomicfile writes the small state files pgwarden keeps
// (quarantine list, logins, held results, alert queue, norms) so that a
// reader, or a crash, never sees half of one, and serialises the
// read-modify-write of a file shared by several processes.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Write replaces the file at path with data: written to a temporary file
// (mode 0600) in the same directory, fsynced, renamed over path, and the
// directory fsynced, so that the rename itself survives a crash.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Locked runs fn holding an exclusive lock on path+".lock" (flock), which
// every process that changes path takes: their read-modify-writes do not
// interleave. The lock file is created (0600) if missing, and so is its
// directory (0700).
func Locked(path string, fn func() error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return fn()
}

// StaleAge is how old a temporary file of Write must be for RemoveStale to
// take it for one a crash left: a write lasts milliseconds, and another
// process sharing the directory may be in the middle of one.
const StaleAge = time.Minute

// RemoveStale removes from dir the temporary files of Write that a crash
// (kill -9, power loss) left between creating and renaming them, older
// than StaleAge, and returns their names. serve calls it at start on the
// state directory.
func RemoveStale(dir string, now time.Time) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.Type().IsRegular() || !isTemp(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < StaleAge {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// isTemp reports whether name is one of Write's temporary files:
// "." + the file's name + "-" + digits (os.CreateTemp's).
func isTemp(name string) bool {
	i := strings.LastIndexByte(name, '-')
	if !strings.HasPrefix(name, ".") || i < 2 || i == len(name)-1 {
		return false
	}
	for _, c := range name[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
