"""Small line plots of clathrin and auxilin traces in one PNG, drawn with Pillow (no
plotting library needed): a grid of panels, one track each, rows for groups such as
the top, the borderline and the bottom of a triage list."""

import numpy as np

PANEL = (220, 120)
MARGIN = 6
TITLE_HEIGHT = 14
ROW_LABEL_WIDTH = 90
COLOURS = {"clathrin": (200, 40, 40), "auxilin": (30, 140, 60)}


def draw_trace_grid(rows, path):
    """Write a PNG of `rows`: [(row label, [(panel title, clathrin, auxilin), ...]), ...].
    Each panel scales both traces to its own range; clathrin red, auxilin green."""
    from PIL import Image, ImageDraw

    from biomodels.pipelines.readers import write_png

    columns = max((len(panels) for _, panels in rows), default=1) or 1
    width = ROW_LABEL_WIDTH + columns * (PANEL[0] + MARGIN) + MARGIN
    height = TITLE_HEIGHT + len(rows) * (PANEL[1] + TITLE_HEIGHT + MARGIN) + MARGIN
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 2), "clathrin", fill=COLOURS["clathrin"])
    draw.text((MARGIN + 60, 2), "auxilin", fill=COLOURS["auxilin"])
    for row_index, (label, panels) in enumerate(rows):
        top = TITLE_HEIGHT + row_index * (PANEL[1] + TITLE_HEIGHT + MARGIN)
        draw.text((MARGIN, top + TITLE_HEIGHT + PANEL[1] // 2), label, fill="black")
        for column, (title, clathrin, auxilin) in enumerate(panels):
            left = ROW_LABEL_WIDTH + MARGIN + column * (PANEL[0] + MARGIN)
            draw.text((left, top), title, fill="black")
            box = (left, top + TITLE_HEIGHT, left + PANEL[0], top + TITLE_HEIGHT + PANEL[1])
            draw.rectangle(box, outline=(160, 160, 160))
            for name, values in (("clathrin", clathrin), ("auxilin", auxilin)):
                draw.line(_points(values, box), fill=COLOURS[name], width=1)
    write_png(path, np.asarray(image))
    return path


def _points(values, box):
    """Pixel coordinates of `values` spread across `box`, scaled to its height."""
    values = np.nan_to_num(np.asarray(values, np.float64))
    left, top, right, bottom = box
    low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0
    xs = left + 2 + (right - left - 4) * np.arange(len(values)) / max(1, len(values) - 1)
    ys = bottom - 2 - (bottom - top - 4) * (values - low) / span
    points = list(zip(xs.tolist(), ys.tolist()))
    return points if len(points) > 1 else points * 2
