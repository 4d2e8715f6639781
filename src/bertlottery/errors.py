"""The package's single exception type: raised where bad input is first seen."""


class BertLotteryError(Exception):
    """A user-facing error: the message names the file/key, the value and what was expected."""
