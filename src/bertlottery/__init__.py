"""bertlottery: lottery-ticket experiments on BERT-style encoders (Prasanna et al., 2020)."""

from bertlottery.errors import BertLotteryError

__version__ = "0.1.0"
__all__ = ["BertLotteryError", "__version__"]
