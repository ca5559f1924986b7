// Reads the AnalysisTemplates / ClusterAnalysisTemplates a rollout's gates reference (the pure
// resolution is ../analysis-templates.ts). A GET per template and reconcile: templates are few and
// small, and a fresh read means a reconcile never runs a gate on a template that has changed.
import { K8s } from "kubernetes-fluent-client";
import { apiFailure } from "../../api-failure";
import { describeTemplateRef, type TemplateRef, type TemplateSpec } from "../analysis-templates";
import { isObjectName } from "../engine/spec";
import { AnalysisTemplate } from "../generated/analysistemplate-v1alpha1";
import { ClusterAnalysisTemplate } from "../generated/clusteranalysistemplate-v1alpha1";

async function readTemplate(
  namespace: string,
  ref: TemplateRef,
): Promise<TemplateSpec | undefined> {
  // The name goes into a request path: the CRD's pattern is checked again here.
  if (!isObjectName(ref.templateName)) return undefined;
  try {
    const template = ref.clusterScope
      ? await K8s(ClusterAnalysisTemplate).Get(ref.templateName)
      : await K8s(AnalysisTemplate).InNamespace(namespace).Get(ref.templateName);
    return template.spec as unknown as TemplateSpec | undefined;
  } catch (err) {
    if (apiFailure(err).status === 404) return undefined;
    throw err;
  }
}

/** The referenced templates by describeTemplateRef(ref, namespace); undefined = not found. */
export async function readAnalysisTemplates(
  namespace: string,
  refs: TemplateRef[],
): Promise<Map<string, TemplateSpec | undefined>> {
  const specs = await Promise.all(refs.map(ref => readTemplate(namespace, ref)));
  return new Map(refs.map((ref, i) => [describeTemplateRef(ref, namespace), specs[i]]));
}
