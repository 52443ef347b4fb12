// The figures of one `npm run bench`, gathered into one table. Each benchmark records its
// headline figures with `record`; they are appended as JSON lines to the file BENCH_RESULTS names
// (scripts/bench sets it), and `node scripts/lib/bench-record.mjs FILE` prints the table at the
// end of the run. A benchmark run on its own (no BENCH_RESULTS) records nothing.
import { appendFileSync, readFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";

/**
 * One row: `figure` measured as `value` (in `unit`), against `baseline` measured in the same run
 * (or null when the goal is absolute), the `goal` as text and whether it was `met`.
 */
export function record(figure, value, unit, baseline, goal, met) {
  const file = process.env.BENCH_RESULTS;
  if (!file) return;
  appendFileSync(file, JSON.stringify({ figure, value, unit, baseline, goal, met }) + "\n");
}

const number = (x) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2));

/** The table, as Markdown (the README shows the latest). */
export function table(rows) {
  const lines = [
    "| figure | measured | baseline (same run) | ratio | goal | |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const ratio = r.baseline ? `${(r.value / r.baseline).toFixed(2)}×` : "";
    const baseline = r.baseline === null || r.baseline === undefined ? "" : `${number(r.baseline)} ${r.unit}`;
    lines.push(`| ${r.figure} | ${number(r.value)} ${r.unit} | ${baseline} | ${ratio} | ${r.goal} | ${r.met ? "met" : "**missed**"} |`);
  }
  return lines.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  console.log(`\nnpm run bench, ${new Date().toISOString().slice(0, 10)}, on ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.versions.node}\n`);
  console.log(table(rows));
  const missed = rows.filter((r) => !r.met).length;
  console.log(`\n${rows.length - missed} of ${rows.length} goals met${missed ? `; ${missed} missed` : ""}.`);
}
