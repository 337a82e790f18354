package userjobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/reads"
)

// Runner runs the attempts of user-visible jobs (exports, reports, bulk operations) for the workers
// of internal/jobs: it keeps the jobs row (status, attempt, progress, result, error) in step with
// the work and commits each chunk of work together with its checkpoint. The database announces every
// change of the row to the user's jobUpdated subscriptions.
type Runner struct {
	store *db.DB
	// afterChunk, when set, runs after each committed chunk (tests fail attempts with it).
	afterChunk ChunkHook
	timeout    time.Duration
	logger     *slog.Logger
	// Exports: how long files are kept, about how many bytes a chunk holds, the largest file.
	exportRetention time.Duration
	exportChunkSize int
	exportMaxBytes  int64
}

// RunOptions configure a Runner; zero values take the defaults.
type RunOptions struct {
	AfterChunk      ChunkHook     // tests fail attempts after a chunk with it
	Timeout         time.Duration // an attempt's limit (LONG_JOB_TIMEOUT; 0: 30 minutes)
	Logger          *slog.Logger
	ExportRetention time.Duration // EXPORT_RETENTION (0: 24 h)
	ExportChunkSize int           // 0: DefaultExportChunkSize
	ExportMaxBytes  int64         // 0: DefaultExportMaxBytes
}

// NewRunner builds the runner over the workers' database.
func NewRunner(r *reads.Router, o RunOptions) *Runner {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{store: r.DB(), afterChunk: o.AfterChunk, timeout: o.Timeout, logger: o.Logger,
		exportRetention: o.ExportRetention, exportChunkSize: o.ExportChunkSize, exportMaxBytes: o.ExportMaxBytes}
}

// Timeout is an attempt's limit.
func (t *Runner) Timeout() time.Duration { return t.timeout }

// Try is which attempt of its queue entry a run is (River's attempt and max attempts).
type Try struct {
	Attempt, MaxAttempts int
}

// ErrStop marks what Run returns when the job is over for good (failed permanently): the queue must
// not retry it. errors.Is(err, ErrStop) tells.
var ErrStop = errors.New("the job failed for good")

// ChunkHook runs after chunk n (from 1, per attempt) of job committed; an error fails the attempt
// there, as a crash would. Tests use it; nil in production.
type ChunkHook func(ctx context.Context, job *db.BackgroundJob, n int) error

// Permanent marks an error that retrying cannot fix (the job's input cannot work): the job fails at
// once with BAD_USER_INPUT and message shown to the user.
func Permanent(message string) error { return &permanentError{message: message} }

type permanentError struct{ message string }

func (e *permanentError) Error() string { return e.message }

// Attempt is one attempt of a user-visible job, as its body sees it.
type Attempt struct {
	Job    *db.BackgroundJob // as Start left it: RUNNING, with the checkpoint to resume from
	t      *Runner
	chunks int
}

// Progress is what a chunk reports: processed so far in total (not in this chunk), the total when
// known, and where the next attempt resumes.
type Progress struct {
	Processed  int
	Total      *int
	Checkpoint any
}

// Chunk runs one chunk of work: fn's writes and the job's new progress commit in one transaction,
// so an attempt that dies later resumes right after this chunk and never redoes it. If the job was
// cancelled meanwhile, the chunk rolls back and Chunk returns db.ErrJobNotRunning.
func (a *Attempt) Chunk(ctx context.Context, fn func(s db.Stores) (Progress, error)) error {
	err := a.t.store.InTx(ctx, func(s db.Stores) error {
		p, err := fn(s)
		if err != nil {
			return err
		}
		if err := s.BackgroundJobs.Advance(ctx, a.Job.ID, p.Processed, p.Total, p.Checkpoint); err != nil {
			return err
		}
		a.Job.Processed = int32(p.Processed)
		if p.Total != nil {
			total := int32(*p.Total)
			a.Job.Total = &total
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.chunks++
	if a.t.afterChunk != nil {
		return a.t.afterChunk(ctx, a.Job, a.chunks)
	}
	return nil
}

// Run runs one attempt of the job named by jobID with body, which returns the job's result and,
// optionally, when its output expires. It returns what the queue should hear: nil when the job is
// done (succeeded, failed for good on its last attempt, cancelled or gone), ErrStop when it failed
// for good before that, another error to retry it later.
func (t *Runner) Run(ctx context.Context, try Try, jobID uuid.UUID,
	body func(ctx context.Context, a *Attempt) (result any, expiresAt *time.Time, err error)) error {
	j, err := t.store.Stores().BackgroundJobs.Start(ctx, jobID)
	switch {
	case errors.Is(err, db.ErrJobNotRunning):
		return nil // cancelled, or finished by an attempt whose completion River did not record
	case apperr.CodeOf(err) == apperr.NotFound:
		return nil // its user was deleted, and the job with them
	case err != nil:
		return fmt.Errorf("start job %s: %w", jobID, err)
	}
	a := &Attempt{Job: j, t: t}
	result, expiresAt, err := body(ctx, a)
	if err == nil {
		err = t.store.Stores().BackgroundJobs.Succeed(ctx, j.ID, result, expiresAt)
		if err == nil {
			j.Status = db.JobSucceeded
			return nil
		}
	}
	if errors.Is(err, db.ErrJobNotRunning) {
		t.logger.InfoContext(ctx, "job cancelled while running", "job_id", j.ID.String(), "kind", string(j.Kind))
		return nil
	}
	return t.fail(ctx, try, j, err)
}

// fail records a failed attempt: a permanent error or the last attempt fails the job for good
// (the queue hears nil or ErrStop so it stops too); anything else is retried with backoff.
// The user sees a message without internals; the log has the error.
func (t *Runner) fail(ctx context.Context, try Try, j *db.BackgroundJob, cause error) error {
	var perm *permanentError
	permanent := errors.As(cause, &perm)
	final := permanent || try.Attempt >= try.MaxAttempts
	code, message := apperr.Internal, "the job failed unexpectedly; it is retried automatically"
	switch {
	case permanent:
		code, message = apperr.BadUserInput, perm.message
	case final:
		message = "the job failed unexpectedly and gave up after its last attempt; request it again"
	}
	t.logger.ErrorContext(ctx, "job attempt failed", "job_id", j.ID.String(), "kind", string(j.Kind),
		"attempt", try.Attempt, "final", final, "error", cause.Error())
	// The failure is recorded even if the attempt's context ran out (that is often why it failed).
	rec, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.store.Stores().BackgroundJobs.Fail(rec, j.ID, code, message, final); err != nil {
		return fmt.Errorf("job %s: %w (recording the failure: %v)", j.ID, cause, err)
	}
	j.Status = db.JobQueued
	if final {
		j.Status = db.JobFailed
	}
	if permanent {
		return fmt.Errorf("%w: %w", ErrStop, cause)
	}
	return fmt.Errorf("job %s: %w", j.ID, cause)
}
