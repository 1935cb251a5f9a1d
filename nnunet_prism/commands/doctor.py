"""``nnunet_prism doctor``: resolve every trainer the way ``nnUNetv2_train -tr`` does."""
import contextlib
import io

from nnunet_prism import discovery


def add_arguments(parser):
    pass


def run(args):
    print(f"nnUNet_extTrainer lists our trainer folder: {discovery.is_registered()}")
    failures = 0
    for name in discovery.list_trainers():
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints its search path
                cls = discovery.find_trainer_class(name)
            print(f"  ok   {name}  ({cls.__module__})")
        except RuntimeError as e:
            failures += 1
            print(f"  FAIL {name}: {e}")
    if failures:
        print(discovery.how_to_fix())
    return 1 if failures else 0
