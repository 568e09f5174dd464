// Charts with uPlot (about 50 KB), each with its data as a table beside it: screen readers and tests read the
// same numbers the canvas draws. The drawn uPlot instances are kept on window.__consoleCharts by name.
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

/**
 * `values` are drawn; `raw` (when given) are the figures the table shows, e.g. a stacked bar draws the running total
 * but its row shows its own amount. `kind` "points" marks a level (a threshold) without joining categories.
 */
export type Series = { label: string; values: (number | null)[]; raw?: (number | null)[]; color: string; kind?: "line" | "bars" | "points"; format?: (v: number) => string };

declare global {
  interface Window {
    __consoleCharts?: Record<string, uPlot>;
  }
}

const bars = uPlot.paths.bars!({ size: [0.6, 48] });

export function Chart({ name, title, x, xLabels, series, height = 220, format, axisFormat }: { name: string; title: string; x: number[]; xLabels: string[]; series: Series[]; height?: number; format?: (v: number) => string; axisFormat?: (v: number) => string }) {
  const box = useRef<HTMLDivElement>(null);
  const [showTable, setShowTable] = useState(false);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const theme = document.documentElement.dataset.theme;
    const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    const axis = { stroke: dark ? "#aab2c0" : "#4a5468", grid: { stroke: dark ? "#2a3140" : "#e6e9ef", width: 1 }, ticks: { stroke: dark ? "#2a3140" : "#e6e9ef" } };
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height,
      legend: { show: true, live: false },
      cursor: { points: { size: 6 } },
      scales: { x: { time: false, range: (_u, min, max) => [min - 0.5, max + 0.5] } },
      axes: [
        { ...axis, values: (_u, splits) => splits.map((s) => (Number.isInteger(s) ? (xLabels[s] ?? "") : "")), space: 40 },
        { ...axis, size: 72, values: (_u, splits) => splits.map((v) => (axisFormat ?? format ?? String)(v)) },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          fill: s.kind === "bars" ? s.color : undefined,
          width: s.kind === "bars" ? 0 : 2,
          paths: s.kind === "bars" ? bars : s.kind === "points" ? () => null : undefined,
          points: s.kind === "points" ? { show: true, size: 14, width: 3, fill: s.color } : { show: s.kind !== "bars" },
          value: (_u: uPlot, v: number | null) => (v === null ? "—" : (s.format ?? format ?? String)(v)),
        })),
      ],
    };
    const u = new uPlot(opts, [x, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    (window.__consoleCharts ??= {})[name] = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(280, el.clientWidth), height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      if (window.__consoleCharts?.[name] === u) delete window.__consoleCharts[name];
    };
  }, [name, JSON.stringify(x), JSON.stringify(series.map((s) => s.values)), height, document.documentElement.dataset.theme]);
  return (
    <figure class="chart" data-chart={name}>
      <figcaption>
        <span>{title}</span>
        <button type="button" class="link" aria-expanded={showTable} onClick={() => setShowTable(!showTable)}>
          {showTable ? "Hide data" : "Show data"}
        </button>
      </figcaption>
      <div ref={box} class="chart-canvas" role="img" aria-label={`${title} chart; the same figures are in the table`} />
      {/* A table is never narrower than its content: the wrapper clips it when hidden (and scrolls it on a phone). */}
      <div class={showTable ? "table-wrap" : "sr-only"}>
      <table class="chart-table" data-chart-table={name} aria-label={`${title} data`}>
        <thead>
          <tr>
            <th scope="col">{/* x */}</th>
            {series.map((s) => (
              <th scope="col" key={s.label}>
                {s.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {x.map((_, i) => (
            <tr key={i}>
              <th scope="row">{xLabels[i]}</th>
              {series.map((s) => {
                const v = (s.raw ?? s.values)[i];
                return (
                  <td key={s.label} data-value={v ?? ""}>
                    {v === null || v === undefined ? "—" : (s.format ?? format ?? String)(v)}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
      </div>
    </figure>
  );
}
