"""Analysis errors name no flag; the CLI adds the flag that supplies the missing part."""

import pytest

from aqr_cli.analysis.errors import MissingPartError
from aqr_cli.cli._common import input_error_line
from aqr_cli.core.errors import AQRInputError


def test_missing_part_states_the_fact_and_the_cli_names_the_flag():
    e = MissingPartError("weights_iter_100.pth", "embeddings",
                         "attention needs query/key position embeddings; none given")
    assert isinstance(e, AQRInputError)
    assert "--" not in str(e)
    assert input_error_line(e) == ("weights_iter_100.pth: attention needs query/key position "
                                   "embeddings; pass --checkpoint (its embeddings and reference points)")
    cells = MissingPartError("d.pth", "camera_cells", "camera cells unknown (a dump stores no pts_pers)")
    assert input_error_line(cells).endswith("pts_pers); pass --checkpoint to recompute them from "
                                            "its reference points")


def test_parts_without_a_flag_and_plain_errors_keep_their_message():
    assert input_error_line(MissingPartError("s", "features", "holds no features to modulate")) == \
        "s: holds no features to modulate"
    assert input_error_line(AQRInputError("pts_bev: bad shape")) == "pts_bev: bad shape"
    with pytest.raises(ValueError):
        MissingPartError("s", "nonsense", "x")
