"""Shape rules of the convolution, pooling and spatial resampling layers (BVLC and forks)."""

import warnings

import pytest

from fillers import ShapeError, infer_shapes
from shape_helpers import net, has_field, has_loader, shapes, one, with_input, conv, ip, top_after, pool, fork


def test_conv_group_dilation_and_output_size():
    body = conv("num_output: 6 kernel_size: 3 dilation: 2 group: 2 pad: 1 stride: 2")
    assert one(with_input((1, 4, 11, 11), body)) == [(6, 2, 3, 3), (6,)]
    # (11 + 2 - 5) / 2 + 1 = 5
    assert top_after((1, 4, 11, 11), body, "c") == 6 * 5 * 5


def test_conv_hw_fields_and_no_bias():
    body = conv("num_output: 2 kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 bias_term: false")
    assert one(with_input((1, 3, 9, 4), body)) == [(2, 3, 3, 1)]
    assert top_after((1, 3, 9, 4), body, "c") == 2 * 5 * 4


def test_conv_nd_repeated_fields():
    body = conv("num_output: 4 kernel_size: 3 kernel_size: 1 kernel_size: 2 stride: 1 stride: 2 stride: 1 pad: 1 "
                "pad: 0 pad: 0")
    assert one(with_input((1, 2, 5, 6, 7), body)) == [(4, 2, 3, 1, 2), (4,)]
    assert top_after((1, 2, 5, 6, 7), body, "c") == 4 * 5 * 3 * 6


def test_conv_axis():
    body = conv("num_output: 5 kernel_size: 1 axis: 2")
    assert one(with_input((2, 3, 4, 6), body)) == [(5, 4, 1), (5,)]


def test_conv_output_uses_c_division():
    # (3 - 4) / 2 truncates to 0 in C, so the output is 1 wide (floor division would give 0)
    body = conv("num_output: 1 kernel_size: 4 stride: 2 bias_term: false")
    assert top_after((1, 1, 3, 3), body, "c") == 1


def test_conv_group_must_divide_channels():
    with pytest.raises(ShapeError, match="divisible by group"):
        infer_shapes(net(with_input((1, 3, 8, 8), conv("num_output: 4 kernel_size: 3 group: 2"))))


def test_deconvolution_weight_is_channels_first():
    body = conv("num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 3", type_="Deconvolution")
    assert one(with_input((1, 9, 5, 5), body)) == [(9, 2, 4, 4), (6,)]
    assert top_after((1, 9, 5, 5), body, "c") == 6 * 10 * 10


@pytest.mark.parametrize("type_", ["DepthwiseConvolution"])
def test_depthwise_convolution_is_a_grouped_convolution(type_):
    assert one(with_input((1, 8, 6, 6), conv("num_output: 8 group: 8 kernel_size: 3", type_=type_))) == \
        [(8, 1, 3, 3), (8,)]


def test_convolution_depthwise_fork_ignores_num_output():
    body = conv("num_output: 99 kernel_size: 3 stride: 2 pad: 1 bias_term: false", type_="ConvolutionDepthwise")
    assert one(with_input((1, 8, 6, 6), body)) == [(8, 1, 3, 3)]
    assert top_after((1, 8, 6, 6), body, "c") == 8 * 3 * 3


def test_im2col():
    body = 'layer { name: "i" type: "Im2col" bottom: "x" top: "i" convolution_param { kernel_size: 2 stride: 2 } }'
    assert top_after((1, 3, 4, 4), body, "i") == 3 * 4 * 2 * 2


@pytest.mark.parametrize(
    "size, params, expected",
    [
        (6, "pool: MAX kernel_size: 3 stride: 2", 3),  # ceil((6 - 3) / 2) + 1
        (6, "pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR", 2),
        (5, "pool: MAX kernel_size: 2 stride: 2 pad: 1", 3),  # 4 before the last-window clip
        (7, "pool: AVE kernel_size: 3 stride: 2 pad: 1", 4),  # no clip: 3 * 2 < 7 + 1
        (7, "pool: AVE global_pooling: true", 1),
    ],
)
def test_pooling_rounding_and_clip(size, params, expected):
    assert top_after((1, 2, size, size), pool(params), "p") == 2 * expected * expected


def test_pooling_hw_fields():
    assert top_after((1, 1, 9, 8), pool("kernel_h: 3 kernel_w: 2 stride_h: 3 stride_w: 2"), "p") == 3 * 4


def test_pooling_clips_both_axes_when_either_is_padded():
    # Caffe: if (pad_h || pad_w) the last-window clip applies to both axes.  Width: ceil((6 - 2) / 3) + 1 = 3,
    # and (3 - 1) * 3 >= 6 + 0 drops the window that starts past the input, although pad_w is 0.
    params = "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0"
    assert top_after((1, 1, 9, 6), pool(params), "p") == 5 * 2


def test_pooling_rejects_bad_parameters():
    with pytest.raises(ShapeError, match="not both"):
        infer_shapes(net(with_input((1, 1, 8, 8), pool("kernel_size: 2 kernel_h: 2 kernel_w: 2"))))
    with pytest.raises(ShapeError, match="smaller than the kernel"):
        infer_shapes(net(with_input((1, 1, 8, 8), pool("kernel_size: 2 pad: 2"))))


def test_spp():
    body = 'layer { name: "s" type: "SPP" bottom: "x" top: "s" spp_param { pyramid_height: 3 } }'
    assert top_after((2, 4, 13, 13), body, "s") == 4 * (1 + 4 + 16)


@fork
def test_fork_layers_shape_their_tops():
    cases = {
        'layer { name: "t" type: "Interp" bottom: "x" top: "t" interp_param { zoom_factor: 2 } }': 4 * 9 * 11,
        'layer { name: "t" type: "Interp" bottom: "x" top: "t" interp_param { shrink_factor: 2 } }': 4 * 3 * 3,
        'layer { name: "t" type: "Interp" bottom: "x" top: "t" interp_param { height: 7 width: 8 } }': 4 * 7 * 8,
        'layer { name: "t" type: "ShuffleChannel" bottom: "x" top: "t" shuffle_channel_param { group: 2 } }': 4 * 5 * 6,
        'layer { name: "t" type: "Upsample" bottom: "x" bottom: "x" top: "t" upsample_param { scale: 2 } }': 4 * 10 * 12,
        'layer { name: "t" type: "Upsample" bottom: "x" bottom: "x" top: "t" '
        'upsample_param { upsample_h: 9 upsample_w: 11 } }': 4 * 9 * 11,
    }
    for body, count in cases.items():
        assert top_after((2, 4, 5, 6), body, "t") == count, body


@pytest.mark.skipif(not has_field("padding_param"), reason="schema without DeepLab's padding_param")
def test_deeplab_padding():
    body = 'layer { name: "t" type: "Padding" bottom: "x" top: "t" padding_param { pad_beg: -1 pad_end: -2 } }'
    assert top_after((2, 4, 9, 8), body, "t") == 4 * 6 * 5


@pytest.mark.skipif(not has_loader(), reason="needs fillers.prototxt.load_net for V1 files")
def test_deeplab_v1_padding_layer_file():
    from fillers.prototxt import load_net

    v1 = ('input: "x" input_dim: 1 input_dim: 2 input_dim: 5 input_dim: 5 '
          'layers { name: "pad" type: PADDING bottom: "x" top: "p" padding_param { pad_beg: 2 pad_end: 1 } } '
          'layers { name: "fc" type: INNER_PRODUCT bottom: "p" top: "f" inner_product_param { num_output: 3 } }')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PADDING is not a BVLC V1 type
        parsed = load_net(v1)
    assert shapes(infer_shapes(parsed)) == [("fc", "InnerProduct", [(3, 2 * 8 * 8), (3,)])]
    with pytest.raises(ShapeError, match=r"layer 'pad' \(Padding\): padding must either be both positive or"):
        infer_shapes(net(with_input((1, 2, 5, 5), 'layer { name: "pad" type: "Padding" bottom: "x" top: "p" '
                                                  'padding_param { pad_beg: 2 pad_end: -1 } }')))


REORG = 'layer {{ name: "r" type: "Reorg" bottom: "x" top: "{top}" reorg_param {{ {params} }} }}\n'


@fork
def test_intel_reorg_moves_space_to_depth_and_back():
    def reorg(dims: tuple, params: str) -> tuple:
        body = REORG.format(top="r", params=params)
        return infer_shapes(net(with_input(dims, body + conv("num_output: 1 kernel_size: 1", "r"))))[0].blobs[0].shape

    assert reorg((2, 64, 26, 26), "stride: 2") == (1, 256, 1, 1)
    assert top_after((2, 64, 26, 26), REORG.format(top="r", params="stride: 2"), "r") == 256 * 13 * 13
    assert top_after((1, 8, 7, 9), REORG.format(top="r", params="stride: 2"), "r") == 32 * 3 * 4  # floors
    assert top_after((1, 64, 5, 6), REORG.format(top="r", params="stride: 4 reverse: true"), "r") == 4 * 20 * 24


@fork
@pytest.mark.parametrize("params, top, message", [
    ("", "r", "needs reorg_param stride"),
    ("stride: 0", "r", "stride must be positive"),
    ("stride: 2", "x", "does not allow in-place computation"),
])
def test_intel_reorg_rejects_what_its_setup_rejects(params, top, message):
    with pytest.raises(ShapeError, match=rf"layer 'r' \(Reorg\): {message}"):
        infer_shapes(net(with_input((1, 4, 4, 4), REORG.format(top=top, params=params))))


SPP_PR = ('layer {{ name: "data" type: "SpatialPyramidPoolingData" top: "f" top: "l" '
          'spatial_pyramid_pooling_data_param {{ features_source: "conv5_db" regions_source: "regions.txt" }} }}\n'
          'layer {{ name: "spp" type: "SpatialPyramidPooling" bottom: "f" top: "s" '
          'spatial_pyramid_pooling_param {{ {bins} }} }}\n')


@fork
def test_spatial_pyramid_pooling_pull_601():
    def k(bins: str, dims: tuple) -> int:
        return infer_shapes(net(SPP_PR.format(bins=bins) + ip("s")), inputs={"f": dims})[0].blobs[0].shape[1]

    # kernel = stride = int(13 / bin): 13, 6, 4, 2; ceil-rounded pooling gives 1, 3, 4 and 7 bins a side
    assert k("spatial_bin: 1 spatial_bin: 2 spatial_bin: 3 spatial_bin: 6", (2, 8, 13, 13)) == 8 * (1 + 9 + 16 + 49)
    assert k("spatial_bin: 4", (2, 8, 13, 10)) == 8  # one level: the whole map, whatever the bin
    with pytest.raises(ShapeError, match=r"layer 'spp' \(SpatialPyramidPooling\): filter dimensions cannot be zero"):
        k("spatial_bin: 1 spatial_bin: 20", (2, 8, 13, 13))
    with pytest.raises(ShapeError, match=r"layer 'spp' \(SpatialPyramidPooling\): needs at least one spatial_bin"):
        k("", (2, 8, 13, 13))


@fork
def test_spatial_pyramid_pooling_data_shapes_come_from_its_files():
    with pytest.raises(ShapeError, match=r"layer 'fc' \(InnerProduct\) needs the shape of blob 's', which is computed "
                                         r"from blob 'f'; that cannot be known from the net: layer 'data' "
                                         r"\(SpatialPyramidPoolingData\): .*'conv5_db'.*'regions.txt'.*--input f=D0"):
        infer_shapes(net(SPP_PR.format(bins="spatial_bin: 1") + ip("s")))
