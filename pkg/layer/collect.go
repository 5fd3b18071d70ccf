package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// ReadIgnoreFile reads a .dockerignore-style file. A missing file means no patterns.
func ReadIgnoreFile(file string) (*patternmatcher.PatternMatcher, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ignore file: %w", err)
	}
	defer f.Close()
	return ParseIgnore(f, file)
}

// ParseIgnore parses .dockerignore syntax; name is used in error messages.
func ParseIgnore(r io.Reader, name string) (*patternmatcher.PatternMatcher, error) {
	patterns, err := ignorefile.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	for _, p := range patterns {
		m, err := patternmatcher.New([]string{p})
		if err == nil {
			// Patterns compile lazily on their first match, and an exclusion is only tried once
			// an earlier pattern matched: compile each one's body now, so a bad pattern fails
			// the build here, with its name, not halfway through a walk. The body is compiled
			// under a prefix: "!!x[" is an exclusion of "!x[", which on its own would be read
			// as an exclusion again and never compiled.
			if m, err = patternmatcher.New([]string{"fairing-check/" + strings.TrimPrefix(p, "!")}); err == nil {
				_, err = m.Matches("fairing-check/x")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: invalid pattern %q: %v", name, p, err)
		}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(pm.Patterns()) == 0 {
		return nil, nil
	}
	return pm, nil
}

// Collect resolves sources into the sorted list of entries they put in the image, with every
// parent directory present. It refuses what an image cannot hold faithfully: symlinks that
// leave their source directory or loop, sockets and devices, names that are not UTF-8, and two
// sources for one path.
func Collect(ctx context.Context, sources []Source) ([]Entry, error) {
	return collect(ctx, sources, 0)
}

// collect is Collect with the number of entries expected (the previous walk's), so that the
// walk fills one table of that size rather than pieces that are copied at the end, which at
// the peak held every entry twice. A hint that falls short only costs the copy.
func collect(ctx context.Context, sources []Source, hint int) ([]Entry, error) {
	return collectLimit(ctx, sources, hint, 0)
}

// collectLimit is collect giving up with errTooMany once a walk finds more than limit entries
// (0: no limit).
func collectLimit(ctx context.Context, sources []Source, hint, limit int) ([]Entry, error) {
	var entries []Entry
	if hint > 0 {
		entries = make([]Entry, 0, hint+hint/8+64) // parents and a few new files
	}
	for _, s := range sources {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dest, err := destPath(s.Dest)
		if err != nil {
			return nil, err
		}
		if s.Path == "" {
			mode := s.Mode.Perm() | s.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
			if mode == 0 {
				mode = 0o644
			}
			if dest == "" {
				return nil, fmt.Errorf("generated file cannot have destination /")
			}
			entries = append(entries, Entry{Path: dest, Type: TypeFile, Mode: mode, Size: int64(len(s.Data)), src: dataOrigin(s.Data), Class: s.Class})
			continue
		}
		src, err := filepath.Abs(s.Path)
		if err != nil {
			return nil, err
		}
		// The source itself is followed if it is a symlink: naming a link means its content.
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Path, unwrapPathErr(err))
		}
		switch {
		case fi.IsDir():
			if entries, err = walkDirLimit(ctx, entries, src, dest, s.Ignore, s.Class, limit); err != nil {
				return nil, err
			}
		case fi.Mode().IsRegular():
			if dest == "" {
				return nil, fmt.Errorf("file %s cannot have destination /", s.Path)
			}
			e := fileEntry(fileOrigin(src), dest, fi)
			e.Class = s.Class
			entries = append(entries, e)
		default:
			return nil, unsupportedType(s.Path, fi.Mode())
		}
	}
	return finish(entries)
}

func destPath(d string) (string, error) {
	if !strings.HasPrefix(d, "/") {
		return "", fmt.Errorf("destination %q must be an absolute path in the image", d)
	}
	if strings.ContainsAny(d, "\x00\n\r") || !utf8.ValidString(d) {
		return "", fmt.Errorf("destination %q is not a valid path", d)
	}
	return strings.TrimPrefix(path.Clean(d), "/"), nil
}

func joinDest(dest, rel string) string {
	if dest == "" {
		return rel
	}
	if rel == "" || rel == "." {
		return dest
	}
	return dest + "/" + rel
}

// walkDirPortable walks with filepath.WalkDir and a full-path Lstat per entry, appending to
// entries. It is the walk where no faster one exists (walk_other.go), and the reference the
// Linux walk is tested against.
func walkDirPortable(ctx context.Context, entries []Entry, root, dest string, ign *patternmatcher.PatternMatcher, class Class) ([]Entry, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, unwrapPathErr(err))
	}
	parentInfo := map[string]patternmatcher.MatchInfo{}
	files := dirOrigin(realRoot+string(filepath.Separator), len(joinDest(dest, "x"))-1)
	if realRoot == string(filepath.Separator) {
		files.prefix = realRoot
	}
	err = filepath.WalkDir(realRoot, func(p string, d fs.DirEntry, werr error) error {
		if werr != nil {
			if d != nil && d.IsDir() {
				return fmt.Errorf("cannot read directory %s: %w (fix its permissions or exclude it in .dockerignore)", p, unwrapPathErr(werr))
			}
			return fmt.Errorf("cannot read %s: %w", p, unwrapPathErr(werr))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(realRoot, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." {
			if !utf8.ValidString(rel) || strings.ContainsAny(rel, "\x00\n\r") {
				return fmt.Errorf("file name %q is not valid UTF-8 or contains a line break: rename it or exclude it in .dockerignore", p)
			}
			if ign != nil {
				excluded, info, err := ign.MatchesUsingParentResults(rel, parentInfo[path.Dir(rel)])
				if err != nil {
					return fmt.Errorf("match .dockerignore patterns against %s: %w", rel, err)
				}
				if d.IsDir() {
					parentInfo[rel] = info
				}
				if excluded {
					// Without "!" exceptions nothing below an excluded directory can come back.
					if d.IsDir() && !ign.Exclusions() {
						return filepath.SkipDir
					}
					return nil
				}
			}
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("cannot read %s: %w", p, unwrapPathErr(err))
		}
		target := joinDest(dest, rel)
		switch mode := fi.Mode(); {
		case mode.IsDir():
			if rel == "." {
				// The destination directory itself: created like COPY creates it, whatever the
				// mode of the local folder (a temp dir's 0700, a umask's 0775).
				if target != "" {
					entries = append(entries, Entry{Path: target, Type: TypeDir, Mode: 0o755, Class: class})
				}
				return nil
			}
			e := Entry{Path: target, Type: TypeDir, Mode: permOf(mode), Class: class}
			e.setModTime(fi.ModTime())
			entries = append(entries, e)
		case mode.IsRegular():
			e := fileEntry(files, target, fi)
			e.Class = class
			files = e.src // the next file is most likely on the same device: it shares this origin
			entries = append(entries, e)
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("cannot read symlink %s: %w", p, unwrapPathErr(err))
			}
			if err := checkSymlink(realRoot, p, rel, link); err != nil {
				return err
			}
			e := Entry{Path: target, Type: TypeSymlink, Mode: 0o777, src: linkOrigin(link), Class: class}
			e.setModTime(fi.ModTime())
			entries = append(entries, e)
		default:
			return unsupportedType(p, mode)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// checkSymlink refuses links that would point outside the directory being copied (in the
// image they would point at whatever happens to be there, or nowhere) and links that loop.
func checkSymlink(root, p, rel, link string) error {
	outside := func() error {
		return fmt.Errorf("symlink %s points outside the context (-> %s): replace it with the file it points to, or exclude it in .dockerignore", p, link)
	}
	if filepath.IsAbs(link) {
		return outside()
	}
	if lexical := path.Join(path.Dir(rel), filepath.ToSlash(link)); lexical == ".." || strings.HasPrefix(lexical, "../") {
		return outside()
	}
	resolved, err := filepath.EvalSymlinks(p)
	switch {
	case err == nil:
		r, err := filepath.Rel(root, resolved)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return outside()
		}
	case errors.Is(err, syscall.ELOOP) || strings.Contains(err.Error(), "too many links"):
		return fmt.Errorf("symlink %s is part of a loop (-> %s): fix or remove it, or exclude it in .dockerignore", p, link)
	default:
		// Dangling inside the context is fine: the target may appear at run time.
	}
	return nil
}

func fileEntry(src *origin, target string, fi fs.FileInfo) Entry {
	e := Entry{Path: target, Type: TypeFile, Mode: permOf(fi.Mode()), Size: fi.Size(), src: src}
	e.setModTime(fi.ModTime())
	fillStat(&e, fi)
	return e
}

func permOf(m fs.FileMode) fs.FileMode {
	return m.Perm() | m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
}

func unsupportedType(p string, m fs.FileMode) error {
	kind := "special file"
	switch {
	case m&fs.ModeSocket != 0:
		kind = "socket"
	case m&fs.ModeNamedPipe != 0:
		kind = "named pipe"
	case m&fs.ModeCharDevice != 0:
		kind = "character device"
	case m&fs.ModeDevice != 0:
		kind = "device"
	}
	return fmt.Errorf("%s is a %s, which an image layer cannot hold: exclude it in .dockerignore", p, kind)
}

// unwrapPathErr drops the *PathError wrapper, whose path our messages already name.
func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// finish sorts entries, adds missing parent directories, merges duplicate directories and
// refuses two different sources for one path.
func finish(entries []Entry) ([]Entry, error) {
	sortEntries(entries)
	out := entries[:0]
	for _, e := range entries {
		if n := len(out); n > 0 && out[n-1].Path == e.Path {
			prev := &out[n-1]
			if prev.Type == TypeDir && e.Type == TypeDir {
				continue // the same directory reached from two sources: keep the first
			}
			return nil, fmt.Errorf("two sources for /%s (%s and %s): give each a different destination", e.Path, describe(prev), describe(&e))
		}
		out = append(out, e)
	}
	entries = out

	// Parents that no source named explicitly are added with 0755. On the way up, a file where a
	// directory is needed ("/app/x" a file and "/app/x/y" a file too) shows as the parent of
	// some entry: the first such file in path order is reported.
	types := make(map[string]EntryType, len(entries))
	for i := range entries {
		types[entries[i].Path] = entries[i].Type
	}
	var parents []Entry
	var conflict string
	var conflictType EntryType
	for i := range entries {
		for d := path.Dir(entries[i].Path); d != "."; d = path.Dir(d) {
			t, ok := types[d]
			if !ok {
				types[d] = TypeDir
				parents = append(parents, Entry{Path: d, Type: TypeDir, Mode: 0o755})
				continue
			}
			if t != TypeDir && (conflict == "" || d < conflict) {
				conflict, conflictType = d, t
			}
			break
		}
	}
	if conflict != "" {
		return nil, fmt.Errorf("/%s is a %s in one source and a directory in another: give them different destinations", conflict, conflictType)
	}
	if len(parents) > 0 {
		entries = append(entries, parents...)
		sortEntries(entries)
	}
	markHardlinks(entries)
	return entries, nil
}

func describe(e *Entry) string {
	switch {
	case e.local():
		return e.SourcePath()
	case e.Type == TypeFile:
		return "generated content"
	default:
		return e.Type.String()
	}
}

// markHardlinks turns every later name of a multiply-linked local file into a hard link to
// its first name, in sorted order, as tar does.
func markHardlinks(entries []Entry) {
	lk := linker{}
	for i := range entries {
		lk.mark(&entries[i])
	}
}

// linker finds the later names of multiply-linked files among entries given in path order.
type linker map[linkID]string

type linkID struct{ dev, ino uint64 }

// mark turns e into a hard link if a file seen before is the same file.
func (lk linker) mark(e *Entry) {
	if e.Type != TypeFile || !e.multiLink || e.ino == 0 {
		return
	}
	k := linkID{e.dev(), e.ino}
	if p, ok := lk[k]; ok {
		e.Type = TypeHardlink
		e.src = e.src.withLink(p)
		return
	}
	lk[k] = strings.Clone(e.Path) // a walk's path would keep its whole arena block alive
}
