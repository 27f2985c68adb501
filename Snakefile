# scDSEC: deep structure-enhanced clustering of single-cell RNA-seq data.
# download → qc → normalize → graph (→ train → evaluate → plots), one rule file per stage.

configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/graph.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/markers.smk"


# `download` needs the internet: on a cluster it runs on the submit node, never as a job.
localrules:
    all,
    download,
    benchmark,
    ablation,
    sensitivity,


onsuccess:
    print_run_summary()


onerror:
    print_how_to_resume(log)


rule all:
    input:
        final_outputs(),
        evaluation_outputs(),
        plot_outputs(),
        experiment_figures_for_report,
    default_target: True
