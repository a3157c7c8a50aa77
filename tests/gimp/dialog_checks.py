# The interactive half of the GIMP tests: opens the plug-in's dialog on a
# photo (run-mode INTERACTIVE), waits while tests/gimp/drive-dialog.sh works
# the dialog with xdotool and presses OK, then checks the result layer.
# Run under Xvfb by tests/gimp/run-in-chroot.sh; writes "PASS name" /
# "FAIL name: why" lines to DIAT_GIMP_RESULTS.
import os

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio  # noqa: E402

RESULTS = os.environ["DIAT_GIMP_RESULTS"]
LANGUAGE = os.environ.get("DIAT_DIALOG_LANGUAGE", "en")
PHOTO = os.path.join(os.environ.get("DIAT_SOURCE_ROOT", "."), "tests/data/photos/astronaut.png")


def report(name, ok, why=""):
    with open(RESULTS, "a") as out:
        out.write(("PASS %s\n" % name) if ok else ("FAIL %s: %s\n" % (name, why)))


image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(PHOTO))
procedure = Gimp.get_pdb().lookup_procedure("plug-in-diat-attribute-transfer")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", [image.get_layers()[0]])
# Used when the profile holds no last values yet (the first run); later runs
# open with what the previous OK saved.
config.set_property("model", "fixture-tint-model")
config.set_property("use-model-ratio", False)
config.set_property("ratio", 0.2)
result = procedure.run(config)
status = result.index(0)
layers = image.get_layers()
name = "dialog (%s): OK gives a new layer with a layer mask" % LANGUAGE
if status != Gimp.PDBStatusType.SUCCESS:
    report(name, False, "status %s %s" % (status, result.index(1) if result.length() > 1 else ""))
elif len(layers) != 2 or layers[0].get_mask() is None:
    report(name, False, "%d layers, mask %s" % (len(layers), layers[0].get_mask()))
else:
    report(name, True)
