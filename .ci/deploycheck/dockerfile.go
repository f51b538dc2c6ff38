package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	digest "github.com/opencontainers/go-digest"
)

// checkDockerfile runs BuildKit's Dockerfile checks on path: the rules
// `docker build --check` applies (buildx is not on this machine, and
// hadolint is not packaged for Debian), with every warning an error.
// Base images are not looked up ([offline]): the checks that need their
// configuration see an empty one.
func checkDockerfile(ctx context.Context, path string) error {
	dt, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// The lint results carry the source's LLB definition; an empty one
	// does, as no build follows.
	def, err := llb.Scratch().Marshal(ctx)
	if err != nil {
		return err
	}
	opt := dockerfile2llb.ConvertOpt{SourceMap: llb.NewSourceMap(nil, path, "Dockerfile", dt)}
	opt.SourceMap.Definition = def
	opt.MetaResolver = offline{}
	res, err := dockerfile2llb.DockerfileLint(ctx, dt, opt)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	if res.Error != nil {
		errs = append(errs, fmt.Errorf("%s: %s", path, res.Error.Message))
	}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		errs = append(errs, fmt.Errorf("%s:%d: %s: %s (%s)", path, line, w.RuleName, w.Detail, w.URL))
	}
	return errors.Join(errs...)
}

// offline answers every base image lookup with an empty image
// configuration, so the linter never goes to a registry.
type offline struct{}

// ResolveImageConfig returns ref unresolved, with an empty configuration.
func (offline) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	return ref, "", []byte("{}"), nil
}
