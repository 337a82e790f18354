// PostGraphile 5 over the benchmark's database, as `taskgraph bench` runs it: the Amber preset in
// production mode (GRAPHILE_ENV=production, no GraphiQL, no explain, no schema watch), its own
// process, listening on 127.0.0.1 only. Settings come from the environment:
//   DATABASE_URL  the bench database
//   HOST, PORT    where to listen (the bench picks a free loopback port)
//   PG_POOL_MAX   connections in the pool (the bench passes the Taskgraph server's DB_MAX_CONNS)
// It prints "ready <host>:<port>" on stdout once it accepts requests, and exits on SIGTERM.
import { createServer } from "node:http";
import { postgraphile } from "postgraphile";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`server.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
const host = env("HOST");
if (host !== "127.0.0.1") {
  console.error("server.mjs: HOST must be 127.0.0.1");
  process.exit(2);
}

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: env("DATABASE_URL"),
      schemas: ["public"],
      poolConfig: { max: Number(env("PG_POOL_MAX")) },
    }),
  ],
  grafserv: { graphiql: false, watch: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (e) => {
  console.error("server.mjs:", e);
  process.exit(1);
});
await serv.addTo(server);
await pgl.getSchema(); // build the schema before saying ready, so no measured request pays for it
server.listen(Number(env("PORT")), host, () => {
  const a = server.address();
  console.log(`ready ${a.address}:${a.port}`);
});

const stop = async () => {
  server.close();
  server.closeAllConnections();
  await pgl.release();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
