// A smart-HTTP git server for tests: `git http-backend` behind HTTP Basic authentication, so the
// runner's credential handling is exercised for real. `holdPushes` makes receive-pack requests
// wait until released, to kill a runner in the middle of a push.
import { createServer } from "node:http";
import { spawn } from "node:child_process";

export async function startGitServer({ root, username, password }) {
  const expected = "Basic " + Buffer.from(`${username}:${password}`).toString("base64");
  const state = { holdPushes: false, held: [], requests: [] };
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    state.requests.push(`${req.method} ${url.pathname}${url.search}`);
    // `username: null` serves without authentication (benchmarks of many repositories).
    if (username !== null && req.headers.authorization !== expected) {
      res.writeHead(401, { "WWW-Authenticate": 'Basic realm="git"' });
      return res.end("authentication required\n");
    }
    const isPush = url.pathname.endsWith("/git-receive-pack");
    const run = () => {
      const cgi = spawn("git", ["http-backend"], {
        env: {
          ...process.env,
          GIT_PROJECT_ROOT: root,
          GIT_HTTP_EXPORT_ALL: "1",
          REMOTE_USER: username,
          REQUEST_METHOD: req.method,
          PATH_INFO: url.pathname,
          QUERY_STRING: url.search.slice(1),
          CONTENT_TYPE: req.headers["content-type"] ?? "",
          HTTP_CONTENT_ENCODING: req.headers["content-encoding"] ?? "",
          GIT_HTTP_MAX_REQUEST_BUFFER: "100M",
        },
        stdio: ["pipe", "pipe", "inherit"],
      });
      req.pipe(cgi.stdin);
      let head = Buffer.alloc(0);
      let headersDone = false;
      cgi.stdout.on("data", (chunk) => {
        if (headersDone) return res.write(chunk);
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        headersDone = true;
        let status = 200;
        const headers = {};
        for (const line of head.subarray(0, end).toString().split("\r\n")) {
          const [k, ...v] = line.split(":");
          if (k.toLowerCase() === "status") status = parseInt(v.join(":"), 10);
          else headers[k] = v.join(":").trim();
        }
        res.writeHead(status, headers);
        res.write(head.subarray(end + 4));
      });
      cgi.stdout.on("end", () => res.end());
    };
    if (isPush && state.holdPushes) state.held.push(() => (req.socket.destroyed ? res.destroy() : run()));
    else run();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  return {
    port,
    state,
    url: (repo, creds = username === null ? null : `${username}:${password}`) =>
      `http://${creds === null ? "" : `${creds}@`}127.0.0.1:${port}/${repo}`,
    releasePushes() {
      state.holdPushes = false;
      for (const run of state.held.splice(0)) run();
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}
