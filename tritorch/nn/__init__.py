"""``tritorch.nn``: Modules (layers with parameters), containers, activations, ``functional`` and ``init``."""
from .parameter import Parameter, Buffer  # noqa: F401
from .module import Module  # noqa: F401
from .containers import Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict  # noqa: F401
from .linear import Identity, Linear, Bilinear, Flatten, Unflatten  # noqa: F401
from .activation import (ReLU, ReLU6, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh, Softplus, Hardtanh,  # noqa: F401
                         Softmax, LogSoftmax)
from .activation import Mish, Hardswish, SELU, CELU, Softsign, Threshold, PReLU, GLU, Softmin  # noqa: F401
from .loss import (L1Loss, MSELoss, SmoothL1Loss, HuberLoss, NLLLoss, CrossEntropyLoss, BCELoss,  # noqa: F401
                   BCEWithLogitsLoss, KLDivLoss)
from .loss import TripletMarginLoss, CosineEmbeddingLoss, MarginRankingLoss  # noqa: F401
from .distance import CosineSimilarity, PairwiseDistance  # noqa: F401
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d  # noqa: F401
from .pooling import (MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d,  # noqa: F401
                      AdaptiveMaxPool1d, AdaptiveMaxPool2d)
from .normalization import (BatchNorm1d, BatchNorm2d, LayerNorm, RMSNorm, GroupNorm, InstanceNorm1d,  # noqa: F401
                            InstanceNorm2d)
from .dropout import Dropout, Dropout2d  # noqa: F401
from .upsampling import Upsample, UpsamplingNearest2d, UpsamplingBilinear2d, PixelShuffle, PixelUnshuffle  # noqa: F401
from .padding import ConstantPad1d, ConstantPad2d, ConstantPad3d, ZeroPad1d, ZeroPad2d, ZeroPad3d  # noqa: F401
from .padding import (ReflectionPad1d, ReflectionPad2d, ReflectionPad3d, ReplicationPad1d,  # noqa: F401
                      ReplicationPad2d, ReplicationPad3d, CircularPad1d, CircularPad2d, CircularPad3d)
from .pooling import MaxPool3d, AvgPool3d, AdaptiveAvgPool3d, AdaptiveMaxPool3d  # noqa: F401
from .normalization import BatchNorm3d, InstanceNorm3d  # noqa: F401
from .fold import Fold, Unfold  # noqa: F401
from .transformer import (MultiheadAttention, TransformerEncoderLayer, TransformerEncoder,  # noqa: F401
                          TransformerDecoderLayer, TransformerDecoder, Transformer)
from .sparse import Embedding, EmbeddingBag  # noqa: F401
from .rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell  # noqa: F401
from . import functional, init, utils, modules  # noqa: F401
from . import parallel  # noqa: F401
from .parallel import DataParallel  # noqa: F401
