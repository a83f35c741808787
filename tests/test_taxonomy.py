import pytest

from freightwatch.errors import LabelFormatError
from freightwatch.taxonomy import CLASSES, XVIEW_TYPE_NAMES, ClassMapping, class_id


def test_classes_and_ids():
    assert CLASSES == ("truck", "railcar", "boat")
    assert [class_id(c) for c in CLASSES] == [0, 1, 2]
    with pytest.raises(KeyError):
        class_id("car")


@pytest.mark.parametrize(
    "name,expected",
    [
        ("Truck Tractor", "truck"), ("Trailer", "truck"), ("Truck w/Flatbed", "truck"), ("Truck w/Liquid", "truck"),
        ("Dump Truck", "truck"), ("Haul Truck", "truck"), ("Cargo Truck", "truck"),
        ("Railway Vehicle", "railcar"), ("Passenger Car", "railcar"), ("Cargo Car", "railcar"),
        ("Flat Car", "railcar"), ("Tank car", "railcar"), ("Locomotive", "railcar"),
        ("Maritime Vessel", "boat"), ("Motorboat", "boat"), ("Sailboat", "boat"), ("Tugboat", "boat"),
        ("Barge", "boat"), ("Fishing Vessel", "boat"), ("Ferry", "boat"), ("Yacht", "boat"),
        ("Container Ship", "boat"), ("Oil Tanker", "boat"),
        ("Small Car", None), ("Pickup Truck", None), ("Building", None),
    ],
)
def test_xview_mapping(name, expected):
    assert ClassMapping.xview()(name) == expected


def test_every_mapped_xview_name_is_a_real_xview_type():
    names = {n.lower() for n in XVIEW_TYPE_NAMES.values()}
    for src, _dst in ClassMapping.xview().items():
        assert src.replace(" ", "") in {n.replace("/", "").replace(" ", "") for n in names} or src in names


def test_dota_mapping_normalises_spelling():
    m = ClassMapping.dota()
    assert m("large-vehicle") == "truck" and m("Large Vehicle") == "truck" and m("large_vehicle") == "truck"
    assert m("ship") == "boat"
    assert m("small-vehicle") is None


def test_builtin_has_identity_dota_and_xview():
    m = ClassMapping.builtin()
    assert m("truck") == "truck" and m("ship") == "boat" and m("Tank car") == "railcar"


def test_user_mapping_yaml_both_layouts(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("lorry: truck\nwagon: railcar\ncar: null\n")
    m = ClassMapping.from_yaml(a)
    assert m("Lorry") == "truck" and m("wagon") == "railcar" and m("car") is None and m("ship") == "boat"
    b = tmp_path / "b.yaml"
    b.write_text("boat: [vessel, 'cargo ship']\n")
    m = ClassMapping.from_yaml(b, extend_builtin=False)
    assert m("cargo_ship") == "boat" and m("ship") is None


@pytest.mark.parametrize("text,needle", [
    ("lorry: plane\n", "not a freightwatch class"),
    ("plane: [a, b]\n", "not a freightwatch class"),
    ("- a\n- b\n", "non-empty YAML mapping"),
    ("a: [\n", "cannot read"),
    ("a: 3\n", "expected a class name"),
])
def test_bad_mapping_files_name_the_file(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(LabelFormatError) as err:
        ClassMapping.from_yaml(p)
    assert "bad.yaml" in str(err.value) and needle in str(err.value)
