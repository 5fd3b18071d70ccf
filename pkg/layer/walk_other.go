//go:build !linux

package layer

import (
	"context"

	"github.com/moby/patternmatcher"
)

func walkDir(ctx context.Context, entries []Entry, root, dest string, ign *patternmatcher.PatternMatcher, class Class) ([]Entry, error) {
	return walkDirPortable(ctx, entries, root, dest, ign, class)
}

const sortedWalkSupported = false

func walkDirLimit(ctx context.Context, entries []Entry, root, dest string, ign *patternmatcher.PatternMatcher, class Class, limit int) ([]Entry, error) {
	return walkDirPortable(ctx, entries, root, dest, ign, class)
}

func sortedWalk(ctx context.Context, root, dest string, ign *patternmatcher.PatternMatcher, class Class, budget int, fn func(*Entry) error) error {
	return errWalkTable
}
