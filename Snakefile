# scDSEC: deep structure-enhanced clustering of single-cell RNA-seq data.
# download → qc → normalize → graph (→ train → evaluate → plots), one rule file per stage.

configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/graph.smk"
include: "workflow/rules/train.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
