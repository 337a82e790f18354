package opstest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const (
	createTaskMutation = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id title } } }`
	pageQuery          = `query($after: String) { tasks(first: 3, after: $after, orderBy: {field: CREATED_AT, direction: ASC}) {
  edges { node { title } } pageInfo { hasNextPage endCursor } totalCount } }`
	refreshMutation = `mutation($t: String!) { refreshToken(input: {refreshToken: $t}) { accessToken refreshToken } }`
	loginMutation   = `mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { accessToken } }`
	reportMutation  = `mutation { requestTaskReport { id status } }`
	jobQuery        = `query($id: ID!) { node(id: $id) { ... on Job { status attempt } } }`
)

func createTask(t *testing.T, c *testsupport.Client, title string) {
	t.Helper()
	c.Do(t, createTaskMutation, map[string]any{"input": map[string]any{"title": title}}).Decode(t, &struct{}{})
}

// allTitles pages through c's tasks three at a time with cursors, oldest first.
func allTitles(t *testing.T, c *testsupport.Client) []string {
	t.Helper()
	var titles []string
	var after any
	for range 100 {
		var data struct {
			Tasks struct {
				Edges []struct {
					Node struct{ Title string }
				}
				PageInfo struct {
					HasNextPage bool
					EndCursor   string
				}
				TotalCount int
			}
		}
		c.Do(t, pageQuery, map[string]any{"after": after}).Decode(t, &data)
		for _, e := range data.Tasks.Edges {
			titles = append(titles, e.Node.Title)
		}
		if !data.Tasks.PageInfo.HasNextPage {
			if len(titles) != data.Tasks.TotalCount {
				t.Fatalf("paged %d tasks, totalCount %d", len(titles), data.Tasks.TotalCount)
			}
			return titles
		}
		after = data.Tasks.PageInfo.EndCursor
	}
	t.Fatal("more than 100 pages")
	return nil
}

// refresh exchanges a refresh token and returns the new access and refresh tokens.
func refresh(t *testing.T, env *testsupport.Env, token string) (string, string) {
	t.Helper()
	var data struct {
		RefreshToken struct{ AccessToken, RefreshToken string }
	}
	env.Anonymous().Do(t, refreshMutation, map[string]any{"t": token}).Decode(t, &data)
	return data.RefreshToken.AccessToken, data.RefreshToken.RefreshToken
}

// runReport requests a task report and waits until the job has succeeded; it returns its attempts.
func runReport(t *testing.T, c *testsupport.Client, within time.Duration) int {
	t.Helper()
	var req struct {
		RequestTaskReport struct{ ID, Status string }
	}
	c.Do(t, reportMutation, nil).Decode(t, &req)
	return waitJob(t, c, req.RequestTaskReport.ID, within)
}

// waitJob waits until job id has SUCCEEDED and returns its attempts.
func waitJob(t *testing.T, c *testsupport.Client, id string, within time.Duration) int {
	t.Helper()
	var job struct {
		Node struct {
			Status  string
			Attempt int
		}
	}
	testenv.WaitForState(t, within, "job "+id+" succeeds", func() (bool, string) {
		c.Do(t, jobQuery, map[string]any{"id": id}).Decode(t, &job)
		return job.Node.Status == "SUCCEEDED", fmt.Sprintf("%+v", job.Node)
	})
	return job.Node.Attempt
}
