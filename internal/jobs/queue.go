package jobs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/email"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/tasks"
	"github.com/taskgraph/taskgraph/internal/userjobs"
	"github.com/taskgraph/taskgraph/internal/webhook"
	"github.com/taskgraph/taskgraph/internal/webhooks"
)

// Options configure a Queue. FromConfig fills them from the settings.
type Options struct {
	// Work makes the queue work jobs (and, as River's leader, schedule the periodic ones and rescue
	// jobs whose process died); false: insert only.
	Work bool
	// Workers is how many jobs this process works at once (JOB_WORKERS).
	Workers int
	// JobTimeout cancels a job's context after this long (JOB_TIMEOUT); the job is then retried.
	JobTimeout time.Duration
	// RescueAfter: a job still marked running after this long is retried (JOB_RESCUE_AFTER).
	RescueAfter time.Duration
	// DueSoonWindow and DueReminderInterval drive the due-reminder sweep.
	DueSoonWindow       time.Duration
	DueReminderInterval time.Duration
	// StopTimeout is how long Stop lets running jobs finish before cancelling them.
	StopTimeout time.Duration
	Logger      *slog.Logger    // nil: discard
	Tracer      pgx.QueryTracer // for the queue's own pool (metrics); nil: none
	// AfterWrite, when set, runs in every worker after its write (tests inject failures with it).
	AfterWrite AfterWriteHook
	// WebhookAllowPrivate lets deliveries reach loopback and private addresses (WEBHOOK_ALLOW_PRIVATE,
	// development and tests only); WebhookRetryBase scales a failed delivery's backoff
	// (WEBHOOK_RETRY_BASE × attempt⁴).
	WebhookAllowPrivate bool
	WebhookRetryBase    time.Duration
	// SMTPURL, SMTPFrom and SMTPTLS turn on email delivery of notifications (SMTP_URL, SMTP_FROM,
	// SMTP_TLS; an empty URL: no email). EmailRootCAs, when set, replaces the system's roots (tests);
	// EmailRetryBase scales a failed send's backoff (× attempt⁴).
	SMTPURL, SMTPFrom, SMTPTLS string
	EmailRootCAs               *x509.CertPool
	EmailRetryBase             time.Duration

	// LongJobTimeout is an attempt's limit for exports, reports and bulk operations
	// (LONG_JOB_TIMEOUT); JobRetention and ExportRetention say when finished jobs and export files
	// are deleted (JOB_RETENTION, EXPORT_RETENTION).
	LongJobTimeout  time.Duration
	JobRetention    time.Duration
	ExportRetention time.Duration
	// TaskChangesRetention is how long delta-sync history is kept (TASK_CHANGES_RETENTION).
	TaskChangesRetention time.Duration
	// Invalidator hears of the tasks the workers change (bulk operations), after commit, so caches
	// and live subscriptions see them. nil: nobody.
	Invalidator db.Invalidator
	// AfterChunk, when set, runs after every committed chunk of a user-visible job (tests fail
	// attempts there, as a crash would).
	AfterChunk userjobs.ChunkHook
	// ExportChunkSize is about how many bytes of an export file each chunk holds (0: 1 MiB), and
	// ExportMaxBytes the largest file (0: 2 GiB, what TaskExport.byteSize can count); tests set them
	// small.
	ExportChunkSize int
	ExportMaxBytes  int64
	// RetryPolicy, when set, replaces River's backoff (attempt⁴ seconds) for every job kind without
	// its own NextRetry (tests retry at once with it).
	RetryPolicy river.ClientRetryPolicy
}

// FromConfig returns the options the settings ask for; work says whether this process works jobs.
func FromConfig(cfg config.Config, work bool) Options {
	return Options{
		Work:                 work,
		Workers:              int(cfg.JobWorkers),
		JobTimeout:           cfg.JobTimeout,
		RescueAfter:          cfg.JobRescueAfter,
		DueSoonWindow:        cfg.DueSoonWindow,
		DueReminderInterval:  cfg.DueReminderInterval,
		StopTimeout:          cfg.ShutdownTimeout,
		WebhookAllowPrivate:  cfg.WebhookAllowPrivate,
		WebhookRetryBase:     cfg.WebhookRetryBase,
		SMTPURL:              cfg.SMTPURL,
		SMTPFrom:             cfg.SMTPFrom,
		SMTPTLS:              cfg.SMTPTLS,
		EmailRetryBase:       time.Second,
		LongJobTimeout:       cfg.LongJobTimeout,
		JobRetention:         cfg.JobRetention,
		ExportRetention:      cfg.ExportRetention,
		TaskChangesRetention: cfg.TaskChangesRetention,
	}
}

// purgeInterval is how often finished jobs and expired export files are swept.
const purgeInterval = 10 * time.Minute

// extraConns are the queue pool's connections beyond one per worker: River's LISTEN connection,
// leader election and maintenance, fetching and completing jobs.
const extraConns = 4

// Queue is the River client: it inserts jobs (EnqueueTx, for db.WithEnqueuer) and, with Options.Work,
// works them on a pool of its own, so a burst of jobs never takes connections from API requests.
type Queue struct {
	client      *river.Client[pgx.Tx]
	pool        *pgxpool.Pool // nil for an insert-only queue
	work        bool
	workers     int
	stopTimeout time.Duration
	logger      *slog.Logger

	mu      sync.Mutex
	started bool
	closed  bool
	stop    sync.Once
	stopErr error
}

// New builds the queue. With o.Work it opens its own pool, configured like primary (minus its
// tracer: o.Tracer instead) with o.Workers+4 connections, used by River and by the workers' writes.
// Nothing connects until Start.
func New(primary *pgxpool.Pool, o Options) (*Queue, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	q := &Queue{work: o.Work, workers: o.Workers, stopTimeout: o.StopTimeout, logger: logger}
	sender, err := emailSender(o)
	if err != nil {
		return nil, err
	}
	// Notification workers enqueue deliveries with the notifications they write.
	deliveries := Deliveries{Email: sender != nil}
	var store *db.DB
	if o.Work {
		if o.Workers < 1 {
			return nil, errors.New("jobs: Workers must be at least 1")
		}
		cfg := primary.Config()
		cfg.MaxConns = int32(o.Workers + extraConns)
		cfg.MinConns = 0
		cfg.ConnConfig.Tracer = o.Tracer
		cfg.ConnConfig.RuntimeParams["application_name"] = "taskgraph-jobs"
		// No server-side statement limit here: a job's statements are bounded by JOB_TIMEOUT (its
		// context), River's maintenance by its own timeouts (a reindex may take minutes).
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = "0"
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			return nil, fmt.Errorf("jobs: create pool: %w", err)
		}
		q.pool = pool
		// The workers enqueue jobs too (webhook deliveries of the notifications they write).
		opts := []db.Option{db.WithEnqueuer(q)}
		if o.Invalidator != nil {
			opts = append(opts, db.WithInvalidator(o.Invalidator))
		}
		store = db.New(pool, nil, opts...)
	}
	// Workers act through the domain: notifications are written with their deliveries, and
	// deliveries load what they send under the policy.
	var (
		notes  *notifications.Service
		hooks  *webhooks.Service
		runner *userjobs.Runner
		taskSv *tasks.Service
	)
	if store != nil {
		router := reads.NewRouter(store, nil)
		notes = notifications.New(router).WithDeliveries(deliveries)
		hooks = webhooks.New(router, o.WebhookAllowPrivate)
		taskSv = tasks.New(router, nil, nil)
		runner = userjobs.NewRunner(router, userjobs.RunOptions{AfterChunk: o.AfterChunk, Timeout: o.LongJobTimeout,
			Logger: logger.With("component", "jobs"), ExportRetention: o.ExportRetention,
			ExportChunkSize: o.ExportChunkSize, ExportMaxBytes: o.ExportMaxBytes})
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &NotifyAssignedWorker{Notifications: notes, AfterWrite: o.AfterWrite})
	river.AddWorker(workers, &NotifyStatusChangedWorker{Notifications: notes, AfterWrite: o.AfterWrite})
	river.AddWorker(workers, &DeliverEmailWorker{Notifications: notes, Sender: sender, RetryBase: o.EmailRetryBase,
		Logger: logger.With("component", "email")})
	river.AddWorker(workers, &DeliverWebhookWorker{Webhooks: hooks, Notifications: notes, Client: webhook.NewClient(o.WebhookAllowPrivate),
		RetryBase: o.WebhookRetryBase, Logger: logger.With("component", "webhooks")})
	river.AddWorker(workers, &TaskReportWorker{Runner: runner})
	river.AddWorker(workers, &ExportTasksWorker{Runner: runner})
	river.AddWorker(workers, &BulkUpdateWorker{Runner: runner})
	river.AddWorker(workers, &BulkDeleteWorker{Runner: runner})
	river.AddWorker(workers, &PurgeJobsWorker{Runner: runner, Retention: o.JobRetention})
	river.AddWorker(workers, &PruneSyncWorker{Tasks: taskSv, Store: store, Retention: o.TaskChangesRetention,
		Logger: logger.With("component", "jobs")})
	river.AddWorker(workers, &DueRemindersWorker{Notifications: notes, Window: o.DueSoonWindow, Logger: logger, AfterWrite: o.AfterWrite})

	rc := &river.Config{
		Logger:               logger.With("component", "river"),
		Workers:              workers,
		JobTimeout:           o.JobTimeout,
		RescueStuckJobsAfter: o.RescueAfter,
		RetryPolicy:          o.RetryPolicy,
	}
	if o.Work {
		rc.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.Workers}}
		interval := o.DueReminderInterval
		if interval <= 0 {
			interval = time.Minute
		}
		rc.PeriodicJobs = []*river.PeriodicJob{river.NewPeriodicJob(
			river.PeriodicInterval(interval),
			func() (river.JobArgs, *river.InsertOpts) { return DueRemindersArgs{}, dueRemindersInsertOpts(interval) },
			&river.PeriodicJobOpts{ID: KindDueReminders, RunOnStart: true},
		), river.NewPeriodicJob(
			river.PeriodicInterval(purgeInterval),
			func() (river.JobArgs, *river.InsertOpts) {
				return PurgeJobsArgs{}, &river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByPeriod: purgeInterval}}
			},
			&river.PeriodicJobOpts{ID: KindPurgeJobs, RunOnStart: true},
		), river.NewPeriodicJob(
			river.PeriodicInterval(purgeInterval),
			func() (river.JobArgs, *river.InsertOpts) {
				return PruneSyncArgs{}, &river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByPeriod: purgeInterval}}
			},
			&river.PeriodicJobOpts{ID: KindPruneSync, RunOnStart: true},
		)}
	}
	client, err := river.NewClient(riverpgxv5.New(q.pool), rc)
	if err != nil {
		if q.pool != nil {
			q.pool.Close()
		}
		return nil, fmt.Errorf("jobs: %w", err)
	}
	q.client = client
	return q, nil
}

// Pool is the queue's own pool (for pool metrics); nil for an insert-only queue.
func (q *Queue) Pool() *pgxpool.Pool { return q.pool }

// Works reports whether this queue works jobs (rather than only inserting them).
func (q *Queue) Works() bool { return q.work }

// Running reports whether the workers are working: started, not stopping, and River's client not
// stopped on its own (worker readiness).
func (q *Queue) Running() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started || q.closed {
		return false
	}
	select {
	case <-q.client.Stopped():
		return false
	default:
		return true
	}
}

// emailSender is the sender o's SMTP settings ask for; nil without SMTPURL.
func emailSender(o Options) (*email.Sender, error) {
	if o.SMTPURL == "" {
		return nil, nil
	}
	cfg, err := email.ParseConfig(o.SMTPURL, o.SMTPFrom, o.SMTPTLS)
	if err != nil {
		return nil, fmt.Errorf("jobs: SMTP_URL: %w", err)
	}
	cfg.RootCAs = o.EmailRootCAs
	s, err := email.NewSender(cfg)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if o.Work && o.Logger != nil {
		o.Logger.Info("notification emails on", "smtp", cfg) // Config's LogValue masks the password
	}
	return s, nil
}

// EnqueueTx inserts jobs with tx: they become visible to workers when tx commits, and vanish if it
// rolls back. It implements db.Enqueuer.
func (q *Queue) EnqueueTx(ctx context.Context, tx pgx.Tx, jobs []db.Job) error {
	params := make([]river.InsertManyParams, len(jobs))
	for i, j := range jobs {
		params[i] = river.InsertManyParams{Args: j}
	}
	_, err := q.client.InsertManyTx(ctx, tx, params)
	return err
}

// Start starts working jobs (a no-op for an insert-only queue, or after Close). The workers keep
// running until Stop or Close, whatever becomes of ctx.
func (q *Queue) Start(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.work || q.started || q.closed {
		return nil
	}
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	q.started = true
	q.logger.InfoContext(ctx, "job workers started", "workers", q.workers)
	return nil
}

// Run works jobs until ctx ends, then stops (see Stop).
func (q *Queue) Run(ctx context.Context) error {
	if err := q.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return q.Stop()
}

// Stop stops working: no new jobs are fetched, running ones get StopTimeout to finish and are then
// cancelled (River retries them later, on any process). It is safe to call more than once and from
// several goroutines; every call returns once the workers have stopped.
func (q *Queue) Stop() error {
	q.mu.Lock()
	q.closed = true // no Start after a Stop
	started := q.started
	q.mu.Unlock()
	if !started {
		return nil
	}
	q.stop.Do(func() {
		timeout := q.stopTimeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := q.client.Stop(ctx); err == nil {
			q.logger.Info("job workers stopped")
			return
		}
		q.logger.Warn("job workers did not finish within the stop timeout: cancelling running jobs", "timeout", timeout.String())
		hard, cancelHard := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelHard()
		q.stopErr = q.client.StopAndCancel(hard)
	})
	return q.stopErr
}

// Close stops the workers (see Stop) and closes the queue's pool.
func (q *Queue) Close() {
	if err := q.Stop(); err != nil {
		q.logger.Error("job workers did not stop", "error", err.Error())
	}
	if q.pool != nil {
		q.pool.Close()
	}
}
