"""Units of the workloads' metrics: which are times, sizes and rates, how they convert, and the
words for a change in each direction."""

TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
SIZE_UNITS = {"B": 1, "bytes": 1, "kB": 1024, "KiB": 1024, "KB": 1024, "MB": 1e6, "MiB": 2**20,
              "GB": 1e9, "GiB": 2**30}


def is_rate(unit):
    """A rate ("/s", "per ..."): higher is better. Any other unit: higher is worse."""
    u = (unit or "").strip()
    return "/" in u or u.lower().startswith("per")


def direction_words(unit):
    """(the word for a higher value, for a lower one) of a unit: slower/faster, larger/smaller."""
    u = (unit or "").strip()
    if is_rate(u):
        return "higher", "lower"
    if u in TIME_UNITS:
        return "slower", "faster"
    if u in SIZE_UNITS or u == "pages":
        return "larger", "smaller"
    return "higher", "lower"


def convert(value, unit, to):
    """value in unit expressed in unit `to` (time or size units); None when they do not convert."""
    if unit == to:
        return value
    for table in (TIME_UNITS, SIZE_UNITS):
        if unit in table and to in table:
            return value * table[unit] / table[to]
    return None


def is_time(unit):
    return unit in TIME_UNITS
