// GraphQL Code Generator against the running server (its introspection, as a frontend's CI does):
// typed documents for typed/*.graphql, which typed/usage.ts then uses; `npm run typecheck` (tsc)
// proves the generated types compile and describe what the server answers.
const base = process.env.TASKGRAPH_URL;
if (!base) throw new Error('TASKGRAPH_URL is not set');

module.exports = {
  overwrite: true,
  schema: `${base}/graphql`,
  documents: ['typed/*.graphql'],
  generates: {
    'typed/generated.ts': {
      plugins: ['typescript-operations', 'typed-document-node'],
      config: { strictScalars: true, scalars: { DateTime: 'string' }, enumsAsTypes: true, useTypeImports: true },
    },
  },
};
