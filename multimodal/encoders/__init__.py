"""Per-modality encoders: preprocessed input -> ``(B, out_dim)`` embedding or ``TokenSet``.

Build one by name from the :class:`~multimodal.types.InputSpec` that preprocessing produced::

    from multimodal.encoders import ENCODERS
    enc = ENCODERS.get("small_cnn").from_spec(spec, out_dim=32)

Registered names: ``small_cnn``, ``densenet``, ``resnet``, ``vit``, ``image_embedding`` (imaging);
``attention_mil`` (feature bags); ``snn``, ``grouped_snn`` (genomics); ``text_mlp``,
``text_chunks``, ``text_transformer`` (text); ``clinical_mlp`` (clinical covariates);
``longitudinal_gru``, ``longitudinal_lstm``, ``longitudinal_transformer``, ``longitudinal_mlp``
(repeat measurements).
Importing this package does not import MONAI or transformers: they load when first used.
"""

from multimodal.encoders import bags, clinical, genomics, imaging, longitudinal, text
from multimodal.encoders.base import ENCODERS, Encoder

__all__ = [
    "ENCODERS",
    "Encoder",
    "bags",
    "clinical",
    "genomics",
    "imaging",
    "longitudinal",
    "text",
]
