# Headless checks of the installed plug-in, run inside GIMP 3 by
#   gimp-console-3.0 -i -n --quit --batch-interpreter=python-fu-eval \
#       -b "exec(open('tests/gimp/headless_checks.py').read())"
# (tests/gimp/run-in-chroot.sh does this). Each check appends one line
# "PASS name" or "FAIL name: why" to the file named by DIAT_GIMP_RESULTS.
#
# Photos come from tests/data/photos (DIAT_SOURCE_ROOT); the model is the
# test fixture "fixture-tint-model" (identity plus a red tint), found by name
# in the profile's diat-models folder, so model discovery is tested as well.
import array
import os
import shutil
import tempfile
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

PROC = "plug-in-diat-attribute-transfer"
ROOT = os.environ.get("DIAT_SOURCE_ROOT", ".")
RESULTS = os.environ["DIAT_GIMP_RESULTS"]
PHOTO = os.path.join(ROOT, "tests/data/photos/astronaut.png")
GROUP_PHOTO = os.path.join(ROOT, "tests/data/photos/2008_002506.png")
MODEL = "fixture-tint-model"
# The fixture's own mask marks red-dominant pixels, which the aligned crop of
# a face hardly has; a ratio p makes it edit a fixed share of the face.
RATIO = 0.2


def report(name, ok, why=""):
    with open(RESULTS, "a") as out:
        out.write(("PASS %s\n" % name) if ok else ("FAIL %s: %s\n" % (name, why)))


def check(name, function):
    try:
        why = function()
        report(name, not why, why or "")
    except Exception:  # a crash in a check is that check's failure
        report(name, False, traceback.format_exc().strip().replace("\n", " | "))


def load(path):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    image.clean_all()
    return image


def plain_image(width, height):
    image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, "plain", width, height, Gimp.ImageType.RGB_IMAGE, 100,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.fill(Gimp.FillType.WHITE)
    image.clean_all()
    return image


def pixels(drawable, fmt="R'G'B'A u8"):
    width, height = drawable.get_width(), drawable.get_height()
    buffer = drawable.get_buffer()
    return bytes(buffer.get(Gegl.Rectangle.new(0, 0, width, height), 1.0, fmt,
                            Gegl.AbyssPolicy.NONE))


def run(image, **settings):
    """Runs the procedure on the image's top layer; returns (status, message)."""
    procedure = Gimp.get_pdb().lookup_procedure(PROC)
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [image.get_layers()[0]])
    defaults = {"model": MODEL, "use-model-ratio": False, "ratio": RATIO}
    defaults.update(settings)
    for key, value in defaults.items():
        config.set_property(key.replace("_", "-"), value)
    result = procedure.run(config)
    status = result.index(0)
    message = result.index(1) if result.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else ""
    return status, str(message or "")


def layer_count(image):
    return len(image.get_layers())


# ---- the procedure --------------------------------------------------------

def registered():
    procedure = Gimp.get_pdb().lookup_procedure(PROC)
    if procedure is None:
        return "procedure not found"
    paths = procedure.get_menu_paths()
    if "<Image>/Filters/Face" not in paths:
        return "menu paths %s" % paths
    types = procedure.get_image_types()
    if "RGB" not in types or "GRAY" not in types:
        return "image types %s" % types
    names = [spec.get_name() for spec in procedure.get_arguments()]
    for name in ("model", "use-model-ratio", "ratio", "face", "face-index", "output", "backend"):
        if name not in names:
            return "argument %s missing (%s)" % (name, names)
    return None


def new_layer_mode():
    image = load(PHOTO)
    original = image.get_layers()[0]
    before = pixels(original)
    status, message = run(image)
    if status != Gimp.PDBStatusType.SUCCESS:
        return "status %s: %s" % (status, message)
    layers = image.get_layers()
    if len(layers) != 2:
        return "%d layers" % len(layers)
    new, source = layers[0], layers[1]
    if pixels(source) != before:
        return "the original layer changed"
    mask = new.get_mask()
    if mask is None:
        return "the new layer has no layer mask"
    if "attribute transfer" not in new.get_name():
        return "layer name %r" % new.get_name()
    coverage = pixels(mask, "Y u8")
    after = pixels(new)
    masked = sum(1 for value in coverage if value)
    if masked < 100:
        return "only %d mask pixels" % masked
    outside_changed = sum(1 for i, value in enumerate(coverage)
                          if value == 0 and after[4 * i:4 * i + 4] != before[4 * i:4 * i + 4])
    if outside_changed:
        return "%d pixels outside the mask differ from the original" % outside_changed
    inside_changed = sum(1 for i, value in enumerate(coverage)
                         if value and after[4 * i:4 * i + 4] != before[4 * i:4 * i + 4])
    if inside_changed < masked // 4:
        return "only %d of %d masked pixels changed" % (inside_changed, masked)
    # What the user sees: the composite equals the original outside the mask.
    flat = image.duplicate()
    composite = pixels(flat.flatten(), "R'G'B' u8")
    # Kept as the README's before/after example (made with the test fixture).
    example = os.environ.get("DIAT_EXAMPLE_OUT")
    if example:
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, flat, Gio.File.new_for_path(example), None)
    flat.delete()
    composite_changed = sum(1 for i, value in enumerate(coverage)
                            if value == 0 and composite[3 * i:3 * i + 3] != before[4 * i:4 * i + 3])
    if composite_changed:
        return "%d composite pixels outside the mask differ" % composite_changed
    image.delete()
    return None


def masked_region(path, **settings):
    """The mask of a new-layer run, to compare an in-place run with."""
    image = load(path)
    status, message = run(image, output="new-layer", **settings)
    if status != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError("new-layer run failed: %s" % message)
    coverage = pixels(image.get_layers()[0].get_mask(), "Y u8")
    image.delete()
    return coverage


def in_place_mode():
    coverage = masked_region(PHOTO)
    image = load(PHOTO)
    layer = image.get_layers()[0]
    before = pixels(layer)
    status, message = run(image, output="in-place")
    if status != Gimp.PDBStatusType.SUCCESS:
        return "status %s: %s" % (status, message)
    if layer_count(image) != 1:
        return "in-place added a layer"
    after = pixels(layer)
    changed = [i for i in range(len(coverage)) if after[4 * i:4 * i + 4] != before[4 * i:4 * i + 4]]
    if len(changed) < 100:
        return "only %d pixels changed" % len(changed)
    outside = sum(1 for i in changed if coverage[i] == 0)
    if outside:
        return "%d changed pixels lie outside the mask" % outside
    image.delete()
    return None


def precision_kept(precision, fmt, output):
    """Any precision: pixels outside the mask keep their stored values."""
    def check_precision():
        image = load(PHOTO)
        image.convert_precision(precision)
        image.clean_all()
        layer = image.get_layers()[0]
        before = pixels(layer, fmt)
        size = len(before) // (layer.get_width() * layer.get_height())
        status, message = run(image, output=output)
        if status != Gimp.PDBStatusType.SUCCESS:
            return "status %s: %s" % (status, message)
        edited = image.get_layers()[0]
        after = pixels(edited, fmt)
        if output == "new-layer":
            # Read as float: a faint mask value must not round to "outside".
            coverage = array.array("f", pixels(edited.get_mask(), "Y float"))
        else:
            coverage = masked_region(PHOTO)
        outside = sum(1 for i, value in enumerate(coverage)
                      if value == 0 and after[size * i:size * (i + 1)] != before[size * i:size * (i + 1)])
        changed = sum(1 for i in range(len(coverage))
                      if after[size * i:size * (i + 1)] != before[size * i:size * (i + 1)])
        image.delete()
        if outside:
            return "%d pixels outside the mask changed" % outside
        if changed < 100:
            return "only %d pixels changed" % changed
        return None
    return check_precision


def gray_image():
    image = load(PHOTO)
    image.convert_grayscale()
    image.clean_all()
    status, message = run(image)
    if status != Gimp.PDBStatusType.SUCCESS:
        return "status %s: %s" % (status, message)
    if layer_count(image) != 2 or image.get_layers()[0].get_mask() is None:
        return "no new layer with a mask on a gray image"
    image.delete()
    return None


def model_by_path():
    image = load(PHOTO)
    status, message = run(image, model=os.path.join(ROOT, "tests/data/fixture-tint-model.safetensors"))
    image.delete()
    return None if status == Gimp.PDBStatusType.SUCCESS else "status %s: %s" % (status, message)


def cuda_falls_back():
    # The chroot has no GPU (and no CUDA module): the procedure must still
    # edit the photo, on the CPU, and not fail.
    image = load(PHOTO)
    layers = layer_count(image)
    status, message = run(image, backend="cuda")
    added = layer_count(image) - layers
    image.delete()
    if status != Gimp.PDBStatusType.SUCCESS:
        return "status %s: %s" % (status, message)
    return None if added == 1 else "expected one new layer, got %d" % added


def selection_face():
    image = load(PHOTO)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 60, 20, 130, 150)
    image.clean_all()
    status, message = run(image, face="selection")
    image.delete()
    return None if status == Gimp.PDBStatusType.SUCCESS else "status %s: %s" % (status, message)


def all_faces():
    image = load(GROUP_PHOTO)
    status, message = run(image, face="all", output="new-layer")
    if status != Gimp.PDBStatusType.SUCCESS:
        return "status %s: %s" % (status, message)
    coverage = pixels(image.get_layers()[0].get_mask(), "Y u8")
    width = image.get_width()
    # Several faces: masked columns fall into more than one separate run.
    columns = sorted({i % width for i, value in enumerate(coverage) if value})
    runs = 1 + sum(1 for a, b in zip(columns, columns[1:]) if b - a > 10) if columns else 0
    image.delete()
    return None if runs >= 2 else "the mask covers %d separate face(s)" % runs


# ---- bad inputs: a message naming the problem, the image untouched ---------

def untouched_after(make_image, expected, **settings):
    def check_untouched():
        image = make_image()
        layers = layer_count(image)
        before = pixels(image.get_layers()[0])
        status, message = run(image, **settings)
        if status == Gimp.PDBStatusType.SUCCESS:
            return "succeeded"
        if expected.lower() not in message.lower():
            return "message %r lacks %r" % (message, expected)
        if image.is_dirty():
            return "image marked dirty"
        if layer_count(image) != layers or pixels(image.get_layers()[0]) != before:
            return "image changed"
        image.delete()
        return None
    return check_untouched


def main():
    Gegl.init(None)
    corrupt_dir = tempfile.mkdtemp(prefix="diat-corrupt-")
    corrupt = os.path.join(corrupt_dir, "corrupt.safetensors")
    with open(os.path.join(ROOT, "tests/data/fixture-tint-model.safetensors"), "rb") as source:
        data = source.read()
    with open(corrupt, "wb") as out:
        out.write(data[:len(data) // 2])

    check("procedure registered under Filters/Face with its arguments", registered)
    check("new layer with a layer mask; pixels outside the mask equal the original", new_layer_mode)
    check("in-place mode changes only masked pixels", in_place_mode)
    check("gray image", gray_image)
    check("16-bit image: pixels outside the mask keep their values (in place)",
          precision_kept(Gimp.Precision.U16_NON_LINEAR, "R'G'B'A u16", "in-place"))
    check("32-bit float linear image: outside the mask bit-exact (new layer)",
          precision_kept(Gimp.Precision.FLOAT_LINEAR, "RGBA float", "new-layer"))
    check("model given as a path", model_by_path)
    check("face in the selection", selection_face)
    check("all faces in a group photo", all_faces)
    check("error: no model found", untouched_after(lambda: load(PHOTO), "No model named",
                                                     model="no-such-model"))
    check("error: corrupt model file", untouched_after(lambda: load(PHOTO), "cannot be used",
                                                         model=corrupt))
    check("error: selection empty", untouched_after(lambda: load(PHOTO), "selection is empty",
                                                      face="selection"))
    check("error: no face found", untouched_after(lambda: plain_image(200, 200), "No face",
                                                    face="auto"))
    check("error: tiny image", untouched_after(lambda: plain_image(16, 16), "16 × 16"))
    check("error: face number beyond the faces found",
          untouched_after(lambda: load(PHOTO), "was asked for", face="index", face_index=9))
    check("CUDA chosen without a device: runs on the CPU", cuda_falls_back)
    shutil.rmtree(corrupt_dir, ignore_errors=True)


main()
