"""The channel layouts of Cellpose's training targets and network maps, by name: the
cellular task's examples pack targets in this order, the loss, the metrics, the
summaries and the serving signatures read both by name, never by a channel index."""


#: the parts of a Cellpose training target [..., 5], channel by channel, as the cellular
#: task's examples pack them and `CellposeLoss` reads them: the unit flows (dY, dX), the
#: cell mask (0/1), the instance label (-1 on padding) and the class of the pixel's object
TARGET_PARTS = {"flows": slice(0, 2), "cell": slice(2, 3), "label": slice(3, 4), "pixel_class": slice(4, 5)}
#: the parts of the network's maps [..., 3]: the flows (5 × unit flows) and the cell
#: probability's logits
MAP_PARTS = {"flows": slice(0, 2), "cellprob": slice(2, 3)}
#: the network's flow outputs are this many times the unit flows, as Cellpose trains them
FLOW_SCALE = 5.0


def target_part(targets, name):
    """One part of Cellpose targets (numpy or tensor) by name: the flows keep their
    channel axis [..., 2], the others are [...]."""
    part = targets[..., TARGET_PARTS[name]]
    return part if name == "flows" else part[..., 0]


def map_part(maps, name):
    """One part of the network's maps by name: the flows [..., 2], the cell
    probability's logits [...]."""
    part = maps[..., MAP_PARTS[name]]
    return part if name == "flows" else part[..., 0]
