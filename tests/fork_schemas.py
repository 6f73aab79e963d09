"""Fork schemas for the tests, built from netdsl's BVLC caffe.proto.

Each is BVLC's schema with the fork's own LayerParameter fields at the fork's
numbers (the BVLC fields the fork never had, which hold those numbers in BVLC,
taken out, as in the fork) and the fork's parameter messages, field for field
(names, numbers, types and defaults of the published schemas: weiliu89/caffe
ssd 4817bf8b, alexgkendall/caffe-segnet 344c113b, TimoSaemann/caffe-enet
22d356c9, hszhao/PSPNet 798bdc90).  Only what the tests' nets use is there.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Tuple

BVLC = os.path.join(os.path.dirname(__file__), "..", "netdsl", "proto", "caffe.proto")

SSD_MESSAGES = """
message PermuteParameter {
  repeated uint32 order = 1;
}
message NormalizeParameter {
  optional bool across_spatial = 1 [default = true];
  optional FillerParameter scale_filler = 2;
  optional bool channel_shared = 3 [default = true];
  optional float eps = 4 [default = 1e-10];
}
message PriorBoxParameter {
  enum CodeType {
    CORNER = 1;
    CENTER_SIZE = 2;
    CORNER_SIZE = 3;
  }
  repeated float min_size = 1;
  repeated float max_size = 2;
  repeated float aspect_ratio = 3;
  optional bool flip = 4 [default = true];
  optional bool clip = 5 [default = false];
  repeated float variance = 6;
  optional uint32 img_size = 7;
  optional uint32 img_h = 8;
  optional uint32 img_w = 9;
  optional float step = 10;
  optional float step_h = 11;
  optional float step_w = 12;
  optional float offset = 13 [default = 0.5];
}
message NonMaximumSuppressionParameter {
  optional float nms_threshold = 1 [default = 0.3];
  optional int32 top_k = 2;
  optional float eta = 3 [default = 1.0];
}
message SaveOutputParameter {
  optional string output_directory = 1;
  optional string output_name_prefix = 2;
  optional string output_format = 3;
  optional string label_map_file = 4;
  optional string name_size_file = 5;
  optional uint32 num_test_image = 6;
}
message DetectionOutputParameter {
  optional uint32 num_classes = 1;
  optional bool share_location = 2 [default = true];
  optional int32 background_label_id = 3 [default = 0];
  optional NonMaximumSuppressionParameter nms_param = 4;
  optional SaveOutputParameter save_output_param = 5;
  optional PriorBoxParameter.CodeType code_type = 6 [default = CORNER];
  optional bool variance_encoded_in_target = 8 [default = false];
  optional int32 keep_top_k = 7 [default = -1];
  optional float confidence_threshold = 9;
  optional bool visualize = 10 [default = false];
  optional float visualize_threshold = 11;
  optional string save_file = 12;
}
"""

SEGNET_BN = """
message BNParameter {
  enum BNMode {
    LEARN = 0;
    INFERENCE = 1;
  }
  optional BNMode bn_mode = 3 [default = LEARN];
  optional FillerParameter scale_filler = 1;
  optional FillerParameter shift_filler = 2;
}
"""

UPSAMPLE = """
message UpsampleParameter {
  optional uint32 scale = 1 [default = 2];
  optional uint32 scale_h = 2;
  optional uint32 scale_w = 3;
  optional bool pad_out_h = 4 [default = false];
  optional bool pad_out_w = 5 [default = false];
  optional uint32 upsample_h = 6;
  optional uint32 upsample_w = 7;
}
"""

DENSE = """
message DenseImageDataParameter {
  optional string source = 1;
  optional uint32 batch_size = 2;
  optional uint32 rand_skip = 3 [default = 0];
  optional bool shuffle = 4 [default = false];
  optional uint32 new_height = 5 [default = 0];
  optional uint32 new_width = 6 [default = 0];
  optional bool is_color = 7 [default = true];
  optional string mean_file = 8;
  optional string root_folder = 9 [default = ""];
  optional bool mirror = 10 [default = false];
  optional uint32 crop_width = 11 [default = 0];
  optional uint32 crop_height = 12 [default = 0];
}
"""

PSPNET_BN = """
message BNParameter {
  optional FillerParameter slope_filler = 1;
  optional FillerParameter bias_filler = 2;
  optional float momentum = 3 [default = 0.9];
  optional float eps = 4 [default = 1e-5];
  optional bool frozen = 5 [default = false];
  enum Engine {
    DEFAULT = 0;
    CAFFE = 1;
    CUDNN = 2;
  }
  optional Engine engine = 6 [default = DEFAULT];
}
"""

INTERP = """
message InterpParameter {
  optional int32 height = 1 [default = 0];
  optional int32 width = 2 [default = 0];
  optional int32 zoom_factor = 3 [default = 1];
  optional int32 shrink_factor = 4 [default = 1];
  optional int32 pad_beg = 5 [default = 0];
  optional int32 pad_end = 6 [default = 0];
}
"""

UNPOOLING = """
message UnpoolingParameter {
  enum UnpoolMethod {
    MAX = 0;
    AVE = 1;
    TILE = 2;
  }
  optional UnpoolMethod unpool = 1 [default = MAX];
  optional uint32 pad = 4 [default = 0];
  optional uint32 pad_h = 9 [default = 0];
  optional uint32 pad_w = 10 [default = 0];
  optional uint32 kernel_size = 2;
  optional uint32 kernel_h = 5;
  optional uint32 kernel_w = 6;
  optional uint32 stride = 3 [default = 1];
  optional uint32 stride_h = 7;
  optional uint32 stride_w = 8;
  optional uint32 unpool_size = 12;
  optional uint32 unpool_h = 13;
  optional uint32 unpool_w = 14;
}
"""

#: V1 additions (DeconvNet, HyeonwooNoh/caffe d9e8494a, whose LayerParameter is V1's):
#: fork -> (LayerType enum values, V1LayerParameter fields)
V1_ADDITIONS = {
    "deconvnet": (["UNPOOLING = 42;", "BN = 43;"],
                  ["optional UnpoolingParameter unpooling_param = 44;",
                   "optional BNParameter bn_param = 45;"]),
}

#: messages of BVLC's schema a fork extends: fork -> {message: [added field lines]}
EXTENDED = {
    "segnet": {"DropoutParameter": ["optional bool sample_weights_test = 2 [default = false];"]},
}

#: fork -> (LayerParameter fields (type, name, number), SolverParameter fields, messages)
FORKS: Dict[str, Tuple[List[Tuple[str, str, int]], List[str], str]] = {
    "ssd": ([("PermuteParameter", "permute_param", 202),
             ("PriorBoxParameter", "prior_box_param", 203),
             ("DetectionOutputParameter", "detection_output_param", 204),
             ("NormalizeParameter", "norm_param", 206)],
            ['optional string eval_type = 41 [default = "classification"];',
             'optional string ap_version = 42 [default = "Integral"];'],
            SSD_MESSAGES),
    "segnet": ([("BNParameter", "bn_param", 45),
                ("DenseImageDataParameter", "dense_image_data_param", 138),
                ("UpsampleParameter", "upsample_param", 137)], [],
               SEGNET_BN + UPSAMPLE + DENSE),
    "enet": ([("UpsampleParameter", "upsample_param", 147),
              ("BNParameter", "bn_param", 45),
              ("DenseImageDataParameter", "dense_image_data_param", 46)], [],
             SEGNET_BN + UPSAMPLE + DENSE),
    # DeconvNet's schema has V1 layers only; netdsl upgrades its nets within a schema
    # that has both forms, so its fields are also in LayerParameter (same numbers)
    "deconvnet": ([("UnpoolingParameter", "unpooling_param", 44),
                   ("BNParameter", "bn_param", 45)], [], SEGNET_BN + UNPOOLING),
    "pspnet": ([("BNParameter", "bn_param", 152),
                ("InterpParameter", "interp_param", 143)], [],
               PSPNET_BN + INTERP),
}


def _drop_number(block: str, number: int) -> str:
    return re.sub(r"\n\s*(optional|repeated)\s+[\w.]+\s+\w+\s*=\s*%d\b[^;]*;[^\n]*" % number,
                  "", block, count=1)


def fork_schema_text(fork: str) -> str:
    """The test schema of ``fork`` as text."""
    text = open(BVLC, encoding="utf-8").read()
    fields, solver, messages = FORKS[fork]
    for scope, new in (("LayerParameter", ["optional %s %s = %d;" % f for f in fields]),
                       ("SolverParameter", solver)):
        start = text.index("message %s {" % scope)
        end = text.index("\n}\n", start)
        block = text[start:end]
        for line in new:
            block = _drop_number(block, int(re.search(r"= (\d+)", line).group(1)))
        block += "".join("\n  " + line for line in new)
        text = text[:start] + block + text[end:]
    for scope, lines in EXTENDED.get(fork, {}).items():
        start = text.index("message %s {" % scope)
        end = text.index("\n}\n", start)
        text = text[:end] + "".join("\n  " + f for f in lines) + text[end:]
    if fork in V1_ADDITIONS:
        values, fields_v1 = V1_ADDITIONS[fork]
        start = text.index("message V1LayerParameter {")
        enum = text.index("enum LayerType {", start)
        close = text.index("\n  }", enum)
        text = text[:close] + "".join("\n    " + v for v in values) + text[close:]
        end = text.index("\n}\n", start)
        text = text[:end] + "".join("\n  " + f for f in fields_v1) + text[end:]
    return text + messages


def write_fork_schema(fork: str, directory: str) -> str:
    path = os.path.join(directory, "%s.proto" % fork)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(fork_schema_text(fork))
    return path
