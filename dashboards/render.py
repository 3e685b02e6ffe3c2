#!/usr/bin/env python3
"""Render the corral Grafana dashboards to PNG pictures.

Grafana itself is not needed: the script runs each panel's own queries against
a Prometheus server, with Grafana's macros and the dashboard variables
substituted, and draws the results with matplotlib on the dashboard's
24-column grid. It draws the panel types that the corral dashboards use:
timeseries, stat, bargauge, state-timeline, table and rows. Of the field
options it applies unit, min, max, value mappings, dashed limit lines and
negative-Y overrides. The rest of Grafana's styling is approximated.

Usage:
    render.py --prometheus http://127.0.0.1:9090 --out docs/img \
        dashboards/corral-overview.json dashboards/corral-job.json

Needs Python 3 and matplotlib (Debian: python3-matplotlib).
"""

import argparse
import datetime
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

# Grafana's dark theme, approximately.
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e8e"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2",
           "#b877d9", "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17"]
NAMED_COLORS = {"text": TEXT, "green": "#73bf69", "blue": "#5794f2", "orange": "#ff9830",
                "purple": "#b877d9", "red": "#f2495c", "dark-red": "#c4162a",
                "yellow": "#fade2a"}

# One grid unit: Grafana's dashboards are 24 columns wide and measure height
# in units of about 30 px plus margins.
COLUMN_INCHES = 0.75
ROW_INCHES = 0.38
DPI = 100

DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text):
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: expected a number and ms, s, m, h or d")
    return int(match.group(1)) * DURATION_SECONDS[match.group(2)]


def substitute(expr, values):
    """Replace $name, ${name}, ${name:format} and [[name]] as Grafana does."""
    def replace(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise ValueError(f"unknown variable or macro {name!r} in {expr!r}")
        return values[name]
    pattern = r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]|\$(\w+)"
    return re.sub(pattern, replace, expr)


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def _get(self, path, params):
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        except urllib.error.URLError as error:
            raise RuntimeError(f"request to {self.url} failed: {error.reason}") from error
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def instant(self, expr, at):
        return self._get("/api/v1/query", {"query": expr, "time": at})

    def range(self, expr, start, end, step):
        return self._get("/api/v1/query_range",
                         {"query": expr, "start": start, "end": end, "step": step})


def legend(fmt, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


def si(value, suffix, base=1000.0, prefixes=("", "k", "M", "G", "T", "P")):
    if value == 0 or math.isnan(value):
        return f"0 {suffix}".strip()
    magnitude = abs(value)
    index = 0
    while magnitude >= base and index < len(prefixes) - 1:
        magnitude /= base
        value /= base
        index += 1
    if float(value).is_integer() or abs(value) >= 100:
        digits = 0
    else:
        digits = 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f} {prefixes[index]}{suffix}".strip()


def format_value(value, unit, decimals=None):
    """Format one value in one of the Grafana units that the dashboards use."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "bytes":
        return si(value, "B", 1024.0, ("", "Ki", "Mi", "Gi", "Ti", "Pi"))
    if unit == "Bps":
        return si(value, "B/s")
    if unit == "pps":
        return si(value, "p/s")
    if unit == "iops":
        return si(value, "io/s")
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        for limit, divisor, name in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h")):
            if abs(value) < limit:
                return f"{value / divisor:.{1 if divisor > 1 else 2}f} {name}"
        return f"{value / 86400:.1f} day"
    if unit == "dateTimeAsIso":
        return datetime.datetime.fromtimestamp(value / 1000).strftime("%Y-%m-%d %H:%M:%S")
    if unit.startswith("suffix:"):
        return f"{value:.2f}{unit[len('suffix:'):]}"
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if unit == "short":
        return si(value, "")
    return f"{value:g}"


def mapped(value, mappings):
    """Return the text and color that a value mapping gives `value`, or None."""
    for mapping in mappings or []:
        if mapping.get("type") != "value":
            continue
        key = str(int(value)) if float(value).is_integer() else str(value)
        option = mapping["options"].get(key)
        if option:
            return option.get("text", key), NAMED_COLORS.get(option.get("color"), option.get("color"))
    return None


def override_matches(override, name):
    matcher = override.get("matcher", {})
    if matcher.get("id") == "byRegexp":
        return re.fullmatch(matcher["options"], name) is not None
    if matcher.get("id") == "byName":
        return matcher["options"] == name
    return False


def field_properties(panel, name):
    properties = {}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override_matches(override, name):
            for item in override.get("properties", []):
                properties[item["id"]] = item.get("value")
    return properties


class Renderer:
    def __init__(self, prometheus, values, start, end, step):
        self.prometheus = prometheus
        self.values = values
        self.start = start
        self.end = end
        self.default_step = step
        self.step = step

    def use_panel_interval(self, panel):
        """Apply a panel's minimum interval to $__interval and the query step,
        as Grafana does."""
        self.step = self.default_step
        if "interval" in panel:
            self.step = max(self.step, parse_duration(panel["interval"]))
        self.values["__interval"] = f"{int(self.step * 1000)}ms"

    def expr(self, target):
        return substitute(target["expr"], self.values)

    def axes(self, fig, panel, height_units):
        grid = panel["gridPos"]
        width = 24 * COLUMN_INCHES
        height = height_units * ROW_INCHES
        margin = 0.08
        left = (grid["x"] * COLUMN_INCHES + margin) / width
        bottom = 1 - ((grid["y"] + grid["h"]) * ROW_INCHES - margin) / height
        box = [left, bottom, (grid["w"] * COLUMN_INCHES - 2 * margin) / width,
               (grid["h"] * ROW_INCHES - 2 * margin) / height]
        frame = fig.add_axes(box)
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(BORDER)
        frame.text(0.008, 0.985, panel.get("title", ""), color=TEXT, fontsize=10, ha="left", va="top",
                   transform=frame.transAxes)
        return frame, box

    def inner(self, fig, box, left=0.06, bottom=0.16, right=0.02, top=0.16):
        x, y, w, h = box
        axes = fig.add_axes([x + w * left, y + h * bottom, w * (1 - left - right), h * (1 - bottom - top)])
        axes.set_facecolor(PANEL)
        axes.tick_params(colors=MUTED, labelsize=7)
        for spine in axes.spines.values():
            spine.set_color(BORDER)
        axes.grid(color=BORDER, linewidth=0.5)
        return axes

    def timeseries(self, fig, panel, height_units):
        _, box = self.axes(fig, panel, height_units)
        axes = self.inner(fig, box, left=0.1, bottom=0.3, top=0.12)
        names = self.plot_series(axes, panel)
        if not names:
            axes.text(0.5, 0.5, "No data", color=MUTED, ha="center", va="center",
                      transform=axes.transAxes)
        self.format_axes(axes, panel, names)

    def plot_series(self, axes, panel):
        """Draw every series of the panel's queries and return their names."""
        bars = panel["fieldConfig"]["defaults"].get("custom", {}).get("drawStyle") == "bars"
        names = []
        for target in panel["targets"]:
            for series in self.prometheus.range(self.expr(target), self.start, self.end, self.step):
                name = legend(target.get("legendFormat", ""), series["metric"]) or target["refId"]
                times = [datetime.datetime.fromtimestamp(float(t)) for t, _ in series["values"]]
                points = [float(v) for _, v in series["values"]]
                properties = field_properties(panel, name)
                if properties.get("custom.transform") == "negative-Y":
                    points = [-p for p in points]
                color = PALETTE[len(names) % len(PALETTE)]

                if bars:
                    width = self.step / 86400 * 0.8
                    axes.bar(times, points, width=width, color=color, label=name)
                else:
                    dashed = properties.get("custom.lineStyle", {}).get("fill") == "dash"
                    axes.plot(times, points, color=color, linewidth=1.5 if dashed else 1,
                              linestyle="--" if dashed else "-", label=name)
                names.append(name)
        return names

    def format_axes(self, axes, panel, names):
        """Apply the panel's thresholds, min, max and unit, and draw the legend."""
        defaults = panel["fieldConfig"]["defaults"]
        threshold = defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode")
        if threshold == "dashed":
            for step in defaults.get("thresholds", {}).get("steps", []):
                if step.get("value") is not None:
                    axes.axhline(step["value"], color="#f2495c", linestyle=":", linewidth=1)

        negative = any(field_properties(panel, name).get("custom.transform") for name in names)
        if "min" in defaults and not negative:
            axes.set_ylim(bottom=defaults["min"])
        if "max" in defaults:
            axes.set_ylim(top=defaults["max"])
        unit = defaults.get("unit", "short")
        axes.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: format_value(abs(v), unit)))
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        axes.set_xlim(datetime.datetime.fromtimestamp(self.start), datetime.datetime.fromtimestamp(self.end))

        if names:
            columns = 3 if panel["gridPos"]["w"] >= 12 else 2
            axes.legend(loc="upper left", bbox_to_anchor=(0, -0.12), ncol=columns, fontsize=6.5,
                        frameon=False, labelcolor=TEXT, handlelength=1.5)

    def stat(self, fig, panel, height_units):
        frame, _ = self.axes(fig, panel, height_units)
        defaults = panel["fieldConfig"]["defaults"]
        options = panel.get("options", {})
        texts = []
        for target in panel["targets"]:
            for series in self.prometheus.instant(self.expr(target), self.end):
                value = float(series["value"][1])
                if options.get("textMode") == "name":
                    texts.append((legend(target.get("legendFormat", ""), series["metric"]), TEXT))
                    continue
                mapping = mapped(value, defaults.get("mappings"))
                if mapping:
                    texts.append((mapping[0], mapping[1] or TEXT))
                else:
                    texts.append((format_value(value, defaults.get("unit", "short"), defaults.get("decimals")),
                                  self.threshold_color(defaults, value)))
        if not texts:
            texts.append((defaults.get("noValue", "No data"), MUTED))
        text, color = texts[0]
        frame.text(0.5, 0.42, text, color=color, ha="center", va="center", fontsize=18,
                   fontweight="bold", transform=frame.transAxes)

    @staticmethod
    def threshold_color(defaults, value):
        color = TEXT
        for step in defaults.get("thresholds", {}).get("steps", []):
            if step.get("value") is None or value >= step["value"]:
                color = NAMED_COLORS.get(step["color"], step["color"])
        return color

    def bargauge(self, fig, panel, height_units):
        _, box = self.axes(fig, panel, height_units)
        axes = self.inner(fig, box, left=0.22, bottom=0.06, top=0.14)
        names, values, colors = [], [], []
        for target in panel["targets"]:
            for series in self.prometheus.instant(self.expr(target), self.end):
                name = legend(target.get("legendFormat", ""), series["metric"])
                names.append(name)
                values.append(float(series["value"][1]))
                color = field_properties(panel, name).get("color", {}).get("fixedColor", "green")
                colors.append(NAMED_COLORS.get(color, color))
        axes.barh(names, values, color=colors)
        axes.invert_yaxis()
        axes.tick_params(axis="y", labelcolor=TEXT)
        for index, value in enumerate(values):
            axes.text(value, index, f" {value:g}", va="center", color=TEXT, fontsize=7)
        axes.set_xlim(0, max(values + [1]) * 1.15)

    def state_timeline(self, fig, panel, height_units):
        _, box = self.axes(fig, panel, height_units)
        axes = self.inner(fig, box, left=0.1, bottom=0.14, top=0.12)
        mappings = panel["fieldConfig"]["defaults"].get("mappings")
        rows = []
        for target in panel["targets"]:
            for series in self.prometheus.range(self.expr(target), self.start, self.end, self.step):
                rows.append((legend(target.get("legendFormat", ""), series["metric"]), series["values"]))
        rows.sort()
        width = self.step / 86400
        for index, (_, values) in enumerate(rows):
            for timestamp, value in values:
                text, color = mapped(float(value), mappings) or (value, MUTED)
                start = mdates.date2num(datetime.datetime.fromtimestamp(float(timestamp)))
                axes.broken_barh([(start, width)], (index - 0.4, 0.8), color=color)
        axes.set_yticks(range(len(rows)), [name for name, _ in rows], color=TEXT, fontsize=7)
        axes.invert_yaxis()
        axes.xaxis_date()
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        axes.set_xlim(datetime.datetime.fromtimestamp(self.start), datetime.datetime.fromtimestamp(self.end))
        seen = {}
        for mapping in mappings or []:
            for option in mapping["options"].values():
                seen[option["text"]] = NAMED_COLORS.get(option.get("color"), option.get("color"))
        handles = [mpatches.Patch(color=color, label=text) for text, color in seen.items()]
        axes.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(handles),
                    fontsize=6, frameon=False, labelcolor=TEXT, handlelength=1)

    def table(self, fig, panel, height_units):
        frame, _ = self.axes(fig, panel, height_units)
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        organize = next((t["options"] for t in panel.get("transformations", []) if t["id"] == "organize"), {})
        renames = organize.get("renameByName", {})
        order = sorted(organize.get("indexByName", {}), key=organize.get("indexByName", {}).get)
        rows = {}
        for target in panel["targets"]:
            column = f"Value #{target['refId']}"
            for series in self.prometheus.instant(self.expr(target), self.end):
                key = tuple(sorted(series["metric"].items()))
                row = rows.setdefault(key, dict(series["metric"]))
                row[column] = format_value(float(series["value"][1]), unit)
        columns = [c for c in order if not organize.get("excludeByName", {}).get(c)]
        sort_by = panel.get("options", {}).get("sortBy", [{}])[0].get("displayName")
        sort_column = next((c for c in columns if renames.get(c) == sort_by), None)
        body = sorted(rows.values(), key=lambda r: r.get(sort_column, ""), reverse=True)
        visible = max(1, panel["gridPos"]["h"] - 2)
        cells = [[row.get(c, "") for c in columns] for row in body[:visible]]
        if not cells:
            frame.text(0.5, 0.5, "No data", color=MUTED, ha="center", va="center", transform=frame.transAxes)
            return
        table = frame.table(cellText=cells, colLabels=[renames.get(c, c) for c in columns],
                            loc="upper center", cellLoc="left", bbox=[0.01, 0.02, 0.98, 0.9])
        table.auto_set_font_size(False)
        table.set_fontsize(6.5)
        for cell in table.get_celld().values():
            cell.set_facecolor(PANEL)
            cell.set_edgecolor(BORDER)
            cell.get_text().set_color(TEXT)

    def row(self, fig, panel, height_units):
        grid = panel["gridPos"]
        y = 1 - (grid["y"] + 0.5) * ROW_INCHES / (height_units * ROW_INCHES)
        fig.text(0.005, y, panel.get("title", ""), color=TEXT, fontsize=12, fontweight="bold")

    def render(self, dashboard, path):
        panels = dashboard["panels"]
        height_units = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) + 2
        fig = plt.figure(figsize=(24 * COLUMN_INCHES, (height_units) * ROW_INCHES), dpi=DPI)
        fig.patch.set_facecolor(BACKGROUND)
        draw = {"timeseries": self.timeseries, "stat": self.stat, "bargauge": self.bargauge,
                "state-timeline": self.state_timeline, "table": self.table, "row": self.row}
        for panel in panels:
            handler = draw.get(panel["type"])
            if handler is None:
                raise ValueError(f"panel type {panel['type']!r} of {panel.get('title')!r} is not drawn")
            # Shift every panel down by the title line at the top.
            panel = dict(panel, gridPos=dict(panel["gridPos"], y=panel["gridPos"]["y"] + 2))
            self.use_panel_interval(panel)
            try:
                handler(fig, panel, height_units)
            except RuntimeError as error:
                raise RuntimeError(f"panel {panel.get('title')!r}: {error}") from error
        stamp = datetime.datetime.fromtimestamp(self.end).strftime("%Y-%m-%d %H:%M:%S")
        fig.text(0.005, 1 - 0.9 / height_units, f"{dashboard['title']}  ·  last "
                 f"{int((self.end - self.start) / 60)} minutes up to {stamp}", color=TEXT, fontsize=14)
        fig.savefig(path, facecolor=BACKGROUND)
        plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboards", nargs="+", help="dashboard JSON files")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--out", default=".", help="directory for the PNG files, each named UID.png after its dashboard")
    parser.add_argument("--range", default="15m", help="time range up to now (default 15m)")
    parser.add_argument("--step", default="5s", help="resolution of range queries and $__interval (default 5s)")
    parser.add_argument("--rate-interval", default="1m",
                        help="value of $__rate_interval: at least four scrape intervals (default 1m)")
    parser.add_argument("--instance", default=".+", help="regex for $instance (default: all agents)")
    parser.add_argument("--job", default=".+", help="regex for $job (default: all jobs)")
    args = parser.parse_args()

    end = time.time()
    span = parse_duration(args.range)
    step = parse_duration(args.step)
    parse_duration(args.rate_interval)  # Reject an invalid value before querying.
    values = {"__rate_interval": args.rate_interval, "__interval": args.step,
              "__range": f"{int(span)}s", "instance": args.instance, "job": args.job}
    renderer = Renderer(Prometheus(args.prometheus), values, end - span, end, step)
    for file in args.dashboards:
        with open(file) as handle:
            dashboard = json.load(handle)
        path = f"{args.out}/{dashboard['uid']}.png"
        renderer.render(dashboard, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, RuntimeError, OSError) as error:
        sys.exit(f"render.py: {error}")
