package agent

import (
	"context"
	"log/slog"
	"os"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// examplesService is upstream's examples.hello, the call controllers use
// to check that a node answers.
type examplesService struct {
	log      *slog.Logger
	hostname func() (string, error)
}

// NewExamplesService returns the "examples" service. logger may be nil.
func NewExamplesService(logger *slog.Logger) (Service, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &examplesService{log: logger, hostname: os.Hostname}, nil
}

func (e *examplesService) Name() string { return "examples" }

func (e *examplesService) Methods() map[string]Method {
	return map[string]Method{"hello.ping": e.ping}
}

func (e *examplesService) ping(_ context.Context, args Args) (any, error) {
	if err := args.Want(0, 0); err != nil {
		return nil, err
	}
	name, err := e.hostname()
	if err != nil {
		return nil, xmlrpc.Faultf("OSError", "gethostname: %v", err)
	}
	e.log.Info(name + ": Executing ping")
	return "Pong from " + name, nil
}
