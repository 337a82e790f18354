// Type-checked only (npm run typecheck): the generated types describe the server's answers, and the
// clients accept the typed documents.
import { ApolloClient, HttpLink, InMemoryCache } from '@apollo/client';
import { Client, fetchExchange } from '@urql/core';
import {
  DeferredCountsDocument,
  FinishTaskDocument,
  MyTasksDocument,
  RegisterDocument,
  TaskChangedDocument,
  type TaskStatus,
} from './generated.js';

export async function tour(url: string): Promise<TaskStatus | undefined> {
  const apollo = new ApolloClient({ link: new HttpLink({ uri: url }), cache: new InMemoryCache() });
  const reg = await apollo.mutate({
    mutation: RegisterDocument,
    variables: { input: { name: 'Ada', email: 'ada@example.com', password: 'correct horse battery' } },
  });
  const token: string | undefined = reg.data?.register.accessToken;
  const expires: string | undefined = reg.data?.register.expiresAt;

  const page = await apollo.query({ query: MyTasksDocument, variables: { first: 10 } });
  const first = page.data?.tasks.edges[0]?.node;
  const title: string | undefined = first?.title;
  const tags: string[] | undefined = first?.tags;
  const more: boolean | undefined = page.data?.tasks.pageInfo.hasNextPage;

  const urql = new Client({ url, exchanges: [fetchExchange] });
  const done = await urql.mutation(FinishTaskDocument, { id: first?.id ?? '', version: 1 }).toPromise();
  const status: TaskStatus | undefined = done.data?.updateTask.task.status;

  const counts = await urql.query(DeferredCountsDocument, {}).toPromise();
  const total: number | undefined = counts.data?.me.taskCounts?.total;

  urql.subscription(TaskChangedDocument, {}).subscribe((r) => {
    const kind: 'CREATED' | 'UPDATED' | 'DELETED' | 'RESYNC' | undefined = r.data?.taskChanged.kind;
    void kind;
  });
  void [token, expires, title, tags, more, total];
  return status;
}
