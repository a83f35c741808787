"""Object classes, boat states and mappings from other datasets' class names.

freightwatch counts three classes. Other datasets name their classes differently, so every
reader takes a :class:`ClassMapping` that turns a source name into a freightwatch class or
``None`` (dropped and counted, never silently).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path

import yaml

from freightwatch.errors import LabelFormatError

CLASSES: tuple[str, ...] = ("truck", "railcar", "boat")
"""The freightwatch classes, in the order used for class ids and density-map bands."""


class BoatState(StrEnum):
    """Whether a boat is moored (``docked``), out on the water (``undocked``) or not known."""

    DOCKED = "docked"
    UNDOCKED = "undocked"
    UNKNOWN = "unknown"


def class_id(name: str) -> int:
    """Return the 0-based id of a freightwatch class name.

    Raises:
        KeyError: if ``name`` is not one of :data:`CLASSES`.
    """
    try:
        return CLASSES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; expected one of {', '.join(CLASSES)}") from None


def normalise_name(name: str) -> str:
    """Canonical form of a class name for matching: lower case, ``_``/``-``/``/`` as spaces."""
    return re.sub(r"[\s_\-/]+", " ", str(name).strip().lower())


# xView class ids and names (xView 1.0, 60 classes), as in its `xview_class_labels.txt`.
XVIEW_TYPE_NAMES: dict[int, str] = {
    11: "Fixed-wing Aircraft", 12: "Small Aircraft", 13: "Cargo Plane", 15: "Helicopter",
    17: "Passenger Vehicle", 18: "Small Car", 19: "Bus", 20: "Pickup Truck", 21: "Utility Truck",
    23: "Truck", 24: "Cargo Truck", 25: "Truck w/Box", 26: "Truck Tractor", 27: "Trailer",
    28: "Truck w/Flatbed", 29: "Truck w/Liquid", 32: "Crane Truck", 33: "Railway Vehicle",
    34: "Passenger Car", 35: "Cargo Car", 36: "Flat Car", 37: "Tank car", 38: "Locomotive",
    40: "Maritime Vessel", 41: "Motorboat", 42: "Sailboat", 44: "Tugboat", 45: "Barge",
    47: "Fishing Vessel", 49: "Ferry", 50: "Yacht", 51: "Container Ship", 52: "Oil Tanker",
    53: "Engineering Vehicle", 54: "Tower crane", 55: "Container Crane", 56: "Reach Stacker",
    57: "Straddle Carrier", 59: "Mobile Crane", 60: "Dump Truck", 61: "Haul Truck",
    62: "Scraper/Tractor", 63: "Front loader/Bulldozer", 64: "Excavator", 65: "Cement Mixer",
    66: "Ground Grader", 71: "Hut/Tent", 72: "Shed", 73: "Building", 74: "Aircraft Hangar",
    76: "Damaged Building", 77: "Facility", 79: "Construction Site", 83: "Vehicle Lot",
    84: "Helipad", 86: "Storage Tank", 89: "Shipping container lot", 91: "Shipping Container",
    93: "Pylon", 94: "Tower",
}

# Pickup trucks (xView 20) are light vehicles, not freight: left out on purpose. Add them with a
# user mapping file if your analysis wants them.
_XVIEW_TO_FW: dict[str, str] = {
    **{n: "truck" for n in (
        "Truck", "Cargo Truck", "Truck w/Box", "Truck Tractor", "Trailer", "Truck w/Flatbed",
        "Truck w/Liquid", "Dump Truck", "Haul Truck", "Utility Truck", "Crane Truck", "Cement Mixer",
    )},
    **{n: "railcar" for n in (
        "Railway Vehicle", "Passenger Car", "Cargo Car", "Flat Car", "Tank car", "Locomotive",
    )},
    **{n: "boat" for n in (
        "Maritime Vessel", "Motorboat", "Sailboat", "Tugboat", "Barge", "Fishing Vessel", "Ferry",
        "Yacht", "Container Ship", "Oil Tanker",
    )},
}

_DOTA_TO_FW: dict[str, str] = {"large-vehicle": "truck", "ship": "boat"}


class ClassMapping:
    """Maps source-dataset class names to freightwatch classes.

    Names are matched after :func:`normalise_name`, so ``large-vehicle``, ``Large Vehicle`` and
    ``large_vehicle`` are the same. A name that maps to ``None`` (or is absent) is dropped by the
    readers, which report how many objects of each source name they dropped.

    Args:
        table: Source name -> freightwatch class (or ``None`` to drop explicitly).
        name: A short description used in messages.
    """

    def __init__(self, table: Mapping[str, str | None], name: str = "custom") -> None:
        self.name = name
        self._table: dict[str, str | None] = {}
        for src, dst in table.items():
            if dst is not None and dst not in CLASSES:
                raise ValueError(f"mapping {name!r}: {src!r} maps to unknown class {dst!r}")
            self._table[normalise_name(src)] = dst

    def __call__(self, source_name: str) -> str | None:
        """Return the freightwatch class for ``source_name``, or ``None`` to drop it."""
        return self._table.get(normalise_name(source_name))

    def __contains__(self, source_name: object) -> bool:
        return isinstance(source_name, str) and normalise_name(source_name) in self._table

    def __or__(self, other: ClassMapping) -> ClassMapping:
        """Combine two mappings; ``other`` wins where both name a source class."""
        merged = ClassMapping({}, name=f"{self.name}+{other.name}")
        merged._table = {**self._table, **other._table}
        return merged

    def items(self) -> Iterable[tuple[str, str | None]]:
        """The (normalised source name, target class) pairs."""
        return self._table.items()

    @classmethod
    def identity(cls) -> ClassMapping:
        """freightwatch's own names map to themselves."""
        return cls({c: c for c in CLASSES}, name="freightwatch")

    @classmethod
    def xview(cls) -> ClassMapping:
        """xView type names to freightwatch classes (pickup trucks excluded, see module notes)."""
        return cls(_XVIEW_TO_FW, name="xview")

    @classmethod
    def dota(cls) -> ClassMapping:
        """DOTA v1.x names: ``large-vehicle`` -> truck, ``ship`` -> boat."""
        return cls(_DOTA_TO_FW, name="dota")

    @classmethod
    def builtin(cls) -> ClassMapping:
        """freightwatch names plus the xView and DOTA mappings (their names do not collide)."""
        m = cls.identity() | cls.dota() | cls.xview()
        m.name = "builtin"
        return m

    @classmethod
    def from_yaml(cls, path: str | Path, extend_builtin: bool = True) -> ClassMapping:
        """Load a user mapping file.

        Two layouts are accepted::

            # source name -> class (null drops it explicitly)
            lorry: truck
            wagon: railcar
            car: null

            # or class -> list of source names
            truck: [lorry, semi trailer]
            boat: [vessel]

        Args:
            path: The YAML file.
            extend_builtin: Start from :meth:`builtin` so only additions need listing.

        Raises:
            LabelFormatError: the file is not valid YAML or names an unknown target class.
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise LabelFormatError(path, f"cannot read class mapping: {exc}") from exc
        if not isinstance(data, dict) or not data:
            raise LabelFormatError(path, "class mapping must be a non-empty YAML mapping")
        table: dict[str, str | None] = {}
        for key, value in data.items():
            if isinstance(value, list):
                if key not in CLASSES:
                    raise LabelFormatError(path, f"{key!r} is not a freightwatch class ({', '.join(CLASSES)})")
                table.update({str(v): str(key) for v in value})
            elif value is None or isinstance(value, str):
                if value is not None and value not in CLASSES:
                    raise LabelFormatError(
                        path, f"{key!r} maps to {value!r}, not a freightwatch class ({', '.join(CLASSES)})"
                    )
                table[str(key)] = value
            else:
                raise LabelFormatError(path, f"entry {key!r}: expected a class name, null or a list")
        user = cls(table, name=path.stem)
        return (cls.builtin() | user) if extend_builtin else user
