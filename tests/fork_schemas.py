"""Fork schemas for the tests, built from netdsl's BVLC caffe.proto.

Each is BVLC's schema with the fork's own LayerParameter fields at the fork's
numbers (the BVLC fields the fork never had, which hold those numbers in BVLC,
taken out, as in the fork) and the fork's parameter messages, field for field
(names, numbers, types and defaults of the published schemas: weiliu89/caffe
ssd 4817bf8b, alexgkendall/caffe-segnet 344c113b, TimoSaemann/caffe-enet
22d356c9, hszhao/PSPNet 798bdc90, DeepLab v2 as in xmyqsh/deeplab-v2 071ef5a5).  Only what the tests' nets use is there.
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
message NormalizedBBox {
  optional float xmin = 1;
  optional float ymin = 2;
  optional float xmax = 3;
  optional float ymax = 4;
  optional int32 label = 5;
  optional bool difficult = 6;
  optional float score = 7;
  optional float size = 8;
}
message Annotation {
  optional int32 instance_id = 1 [default = 0];
  optional NormalizedBBox bbox = 2;
}
message AnnotationGroup {
  optional int32 group_label = 1;
  repeated Annotation annotation = 2;
}
message AnnotatedDatum {
  enum AnnotationType {
    BBOX = 0;
  }
  optional Datum datum = 1;
  optional AnnotationType type = 2;
  repeated AnnotationGroup annotation_group = 3;
}
message Sampler {
  optional float min_scale = 1 [default = 1.];
  optional float max_scale = 2 [default = 1.];
  optional float min_aspect_ratio = 3 [default = 1.];
  optional float max_aspect_ratio = 4 [default = 1.];
}
message SampleConstraint {
  optional float min_jaccard_overlap = 1;
  optional float max_jaccard_overlap = 2;
  optional float min_sample_coverage = 3;
  optional float max_sample_coverage = 4;
  optional float min_object_coverage = 5;
  optional float max_object_coverage = 6;
}
message BatchSampler {
  optional bool use_original_image = 1 [default = true];
  optional Sampler sampler = 2;
  optional SampleConstraint sample_constraint = 3;
  optional uint32 max_sample = 4;
  optional uint32 max_trials = 5 [default = 100];
}
message EmitConstraint {
  enum EmitType {
    CENTER = 0;
    MIN_OVERLAP = 1;
  }
  optional EmitType emit_type = 1 [default = CENTER];
  optional float emit_overlap = 2;
}
message ResizeParameter {
  optional float prob = 1 [default = 1];
  enum Resize_mode {
    WARP = 1;
    FIT_SMALL_SIZE = 2;
    FIT_LARGE_SIZE_AND_PAD = 3;
  }
  optional Resize_mode resize_mode = 2 [default = WARP];
  optional uint32 height = 3 [default = 0];
  optional uint32 width = 4 [default = 0];
  optional uint32 height_scale = 8 [default = 0];
  optional uint32 width_scale = 9 [default = 0];
  enum Pad_mode {
    CONSTANT = 1;
    MIRRORED = 2;
    REPEAT_NEAREST = 3;
  }
  optional Pad_mode pad_mode = 5 [default = CONSTANT];
  repeated float pad_value = 6;
  enum Interp_mode {
    LINEAR = 1;
    AREA = 2;
    NEAREST = 3;
    CUBIC = 4;
    LANCZOS4 = 5;
  }
  repeated Interp_mode interp_mode = 7;
}
message SaltPepperParameter {
  optional float fraction = 1 [default = 0];
  repeated float value = 2;
}
message NoiseParameter {
  optional float prob = 1 [default = 0];
  optional bool hist_eq = 2 [default = false];
  optional bool inverse = 3 [default = false];
  optional bool decolorize = 4 [default = false];
  optional bool gauss_blur = 5 [default = false];
  optional float jpeg = 6 [default = -1];
  optional bool posterize = 7 [default = false];
  optional bool erode = 8 [default = false];
  optional bool saltpepper = 9 [default = false];
  optional SaltPepperParameter saltpepper_param = 10;
  optional bool clahe = 11 [default = false];
  optional bool convert_to_hsv = 12 [default = false];
  optional bool convert_to_lab = 13 [default = false];
}
message DistortionParameter {
  optional float brightness_prob = 1 [default = 0.0];
  optional float brightness_delta = 2 [default = 0.0];
  optional float contrast_prob = 3 [default = 0.0];
  optional float contrast_lower = 4 [default = 0.0];
  optional float contrast_upper = 5 [default = 0.0];
  optional float hue_prob = 6 [default = 0.0];
  optional float hue_delta = 7 [default = 0.0];
  optional float saturation_prob = 8 [default = 0.0];
  optional float saturation_lower = 9 [default = 0.0];
  optional float saturation_upper = 10 [default = 0.0];
  optional float random_order_prob = 11 [default = 0.0];
}
message ExpansionParameter {
  optional float prob = 1 [default = 1];
  optional float max_expand_ratio = 2 [default = 1.];
}
message AnnotatedDataParameter {
  repeated BatchSampler batch_sampler = 1;
  optional string label_map_file = 2;
  optional AnnotatedDatum.AnnotationType anno_type = 3;
}
message MultiBoxLossParameter {
  enum LocLossType {
    L2 = 0;
    SMOOTH_L1 = 1;
  }
  optional LocLossType loc_loss_type = 1 [default = SMOOTH_L1];
  enum ConfLossType {
    SOFTMAX = 0;
    LOGISTIC = 1;
  }
  optional ConfLossType conf_loss_type = 2 [default = SOFTMAX];
  optional float loc_weight = 3 [default = 1.0];
  optional uint32 num_classes = 4;
  optional bool share_location = 5 [default = true];
  enum MatchType {
    BIPARTITE = 0;
    PER_PREDICTION = 1;
  }
  optional MatchType match_type = 6 [default = PER_PREDICTION];
  optional float overlap_threshold = 7 [default = 0.5];
  optional bool use_prior_for_matching = 8 [default = true];
  optional uint32 background_label_id = 9 [default = 0];
  optional bool use_difficult_gt = 10 [default = true];
  optional bool do_neg_mining = 11;
  optional float neg_pos_ratio = 12 [default = 3.0];
  optional float neg_overlap = 13 [default = 0.5];
  optional PriorBoxParameter.CodeType code_type = 14 [default = CORNER];
  optional bool encode_variance_in_target = 16 [default = false];
  optional bool map_object_to_agnostic = 17 [default = false];
  optional bool ignore_cross_boundary_bbox = 18 [default = false];
  optional bool bp_inside = 19 [default = false];
  enum MiningType {
    NONE = 0;
    MAX_NEGATIVE = 1;
    HARD_EXAMPLE = 2;
  }
  optional MiningType mining_type = 20 [default = MAX_NEGATIVE];
  optional NonMaximumSuppressionParameter nms_param = 21;
  optional int32 sample_size = 22 [default = 64];
  optional bool use_prior_for_nms = 23 [default = false];
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

MAT_WRITE = """
message MatWriteParameter {
  required string prefix = 1;
  optional string source = 2 [default = ""];
  optional int32 strip = 3 [default = 0];
  optional int32 period = 4 [default = 1];
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
    "deeplab": {"ImageDataParameter": ["optional int32 ignore_label = 15 [default = 255];",
                                       "enum LabelType { NONE = 0; IMAGE = 1; PIXEL = 2; }",
                                       "optional LabelType label_type = 16 [default = IMAGE];"],
                "TransformationParameter": ["optional uint32 crop_width = 9 [default = 0];",
                                            "optional uint32 crop_height = 10 [default = 0];"]},
    "ssd": {"TransformationParameter": ["optional ResizeParameter resize_param = 8;",
                                        "optional NoiseParameter noise_param = 9;",
                                        "optional DistortionParameter distort_param = 13;",
                                        "optional ExpansionParameter expand_param = 14;",
                                        "optional EmitConstraint emit_constraint = 10;"]},
}

#: fork -> (LayerParameter fields (type, name, number), SolverParameter fields, messages)
FORKS: Dict[str, Tuple[List[Tuple[str, str, int]], List[str], str]] = {
    "ssd": ([("AnnotatedDataParameter", "annotated_data_param", 200),
             ("MultiBoxLossParameter", "multibox_loss_param", 201),
             ("PermuteParameter", "permute_param", 202),
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
    # DeconvNet's published schema has V1 layers only (v1_only_schema_text builds that
    # form, which the tests use); this entry gives its messages, and a schema with the
    # fork's fields in both layer forms
    "deconvnet": ([("UnpoolingParameter", "unpooling_param", 44),
                   ("BNParameter", "bn_param", 45)], [], SEGNET_BN + UNPOOLING),
    # DeepLab v2 (bitbucket deeplab/deeplab-public-ver2, as imported in
    # xmyqsh/deeplab-v2 071ef5a5): Interp at PSPNet's number, MatWrite at 145
    "deeplab": ([("InterpParameter", "interp_param", 143),
                 ("MatWriteParameter", "mat_write_param", 145)], [], INTERP + MAT_WRITE),
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


def _drop_block(text: str, header: str) -> str:
    start = text.index(header)
    end = text.index("\n}\n", start) + 3
    return text[:start] + text[end:]


def _set_block(text: str, header: str, body: str) -> str:
    start = text.index(header)
    end = text.index("\n}\n", start) + 3
    return text[:start] + header + "\n" + body.strip("\n") + "\n}\n" + text[end:]


def v1_only_schema_text(fork: str) -> str:
    """The schema of a fork made before Caffe's V2 layers, in the published
    form (HyeonwooNoh/caffe d9e8494a for DeconvNet): ``LayerParameter`` is the
    V1 message (BVLC's later ``V1LayerParameter``) with the fork's enum values
    and fields, ``NetParameter`` has ``layers`` only, ``BlobProto`` has no
    ``shape`` or double fields yet, and ``ConvolutionParameter``'s pad,
    kernel_size and stride are single ``optional`` values (repeated from 2015)."""
    text = open(BVLC, encoding="utf-8").read()
    text = _drop_block(text, "message LayerParameter {")
    text = text.replace("V1LayerParameter", "LayerParameter")
    text = re.sub(r"\n\s*repeated LayerParameter layer = 100;[^\n]*", "", text)
    text = _set_block(text, "message BlobProto {", """
  optional int32 num = 1 [default = 0];
  optional int32 channels = 2 [default = 0];
  optional int32 height = 3 [default = 0];
  optional int32 width = 4 [default = 0];
  repeated float data = 5 [packed = true];
  repeated float diff = 6 [packed = true];""")
    for field, default in (("pad", " [default = 0]"), ("kernel_size", ""),
                           ("stride", " [default = 1]")):
        text = re.sub(r"repeated uint32 %s = (\d+);" % field,
                      r"optional uint32 %s = \1%s;" % (field, default), text, count=1)
    text = re.sub(r"\n\s*repeated uint32 dilation = 18;[^\n]*", "", text, count=1)
    values, fields_v1 = V1_ADDITIONS[fork]
    start = text.index("message LayerParameter {")
    enum = text.index("enum LayerType {", start)
    close = text.index("\n  }", enum)
    text = text[:close] + "".join("\n    " + v for v in values) + text[close:]
    end = text.index("\n}\n", start)
    text = text[:end] + "".join("\n  " + f for f in fields_v1) + text[end:]
    return text + FORKS[fork][2]


def write_v1_only_schema(fork: str, directory: str) -> str:
    path = os.path.join(directory, "%s-v1.proto" % fork)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(v1_only_schema_text(fork))
    return path
