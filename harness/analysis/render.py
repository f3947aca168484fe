"""A report's blocks rendered: Markdown with the plots linked, HTML with the plots embedded.

A block is (kind, body): h1/h2/h3 (text), p, warn, pre (text), ul (a list), table (a DataFrame),
img (a PNG's path) and plot (a workload: with_plots turns it into a heading and its image, or
nothing when no plot was drawn for it; the blocks are made while the plots are still drawn).
"""
import base64
import html
from pathlib import Path


def with_plots(blocks, pngs):
    """The ("plot", workload) blocks as a heading and the workload's image from pngs
    ({workload: PNG}), or dropped when it has none."""
    out = []
    for kind, body in blocks:
        if kind == "plot":
            png = pngs.get(body)
            if png:
                out += [("h3", "Plot"), ("img", png)]
        else:
            out.append((kind, body))
    return out


def markdown(blocks, out_dir):
    out = []
    for kind, body in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + body)
        elif kind == "p":
            out.append(body)
        elif kind == "warn":
            out.append(f"> **WARNING: {body}**")
        elif kind == "pre":
            out.append(f"```\n{body}\n```")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in body))
        elif kind == "table":
            out.append(body.to_markdown(index=False, disable_numparse=True) if len(body) else "(empty)")
        elif kind == "img":
            rel = Path(body).relative_to(out_dir) if Path(body).is_relative_to(out_dir) else body
            out.append(f"![{Path(body).stem}]({rel})")
    return "\n\n".join(out) + "\n"


CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
       "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
       ".warn{background:#fee;border:2px solid #c00;padding:.5em;font-weight:bold}"
       "img{max-width:100%}pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}")


def to_html(blocks, title):
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>"]
    for kind, body in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(body)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(body)}</p>")
        elif kind == "warn":
            out.append(f"<p class='warn'>WARNING: {html.escape(body)}</p>")
        elif kind == "pre":
            out.append(f"<pre>{html.escape(body)}</pre>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in body) + "</ul>")
        elif kind == "table":
            out.append(body.to_html(index=False, border=0) if len(body) else "<p>(empty)</p>")
        elif kind == "img":
            data = base64.b64encode(Path(body).read_bytes()).decode()
            out.append(f"<img alt='{Path(body).stem}' src='data:image/png;base64,{data}'>")
    return "\n".join(out) + "\n</body></html>\n"
