package salesledger.registry.configindex;

import apicurio.common.app.components.config.index.DynamicPropertiesInfoRecorder;
import io.apicurio.common.apps.config.Dynamic;
import io.apicurio.common.apps.config.DynamicConfigPropertyDef;
import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import io.quarkus.arc.deployment.BeanDiscoveryFinishedBuildItem;
import io.quarkus.arc.deployment.SyntheticBeanBuildItem;
import io.quarkus.arc.processor.InjectionPointInfo;
import io.quarkus.deployment.annotations.BuildProducer;
import io.quarkus.deployment.annotations.BuildStep;
import io.quarkus.deployment.annotations.ExecutionTime;
import io.quarkus.deployment.annotations.Record;
import io.quarkus.deployment.builditem.FeatureBuildItem;
import java.util.ArrayList;
import java.util.List;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.jandex.AnnotationInstance;
import org.jboss.jandex.AnnotationValue;
import org.jboss.jandex.DotName;
import org.jboss.jandex.Type;

/**
 * Build steps of the "config-index" Quarkus extension used by Apicurio Registry 2.4.x.
 *
 * <p>The registry injects its runtime-editable settings as fields annotated both
 * {@code @ConfigProperty(name=..., defaultValue=...)} and {@code @Dynamic}, typed
 * {@code Supplier<T>}. At build time this class lists them and registers one synthetic,
 * application-wide bean {@link DynamicConfigPropertyList} holding a
 * {@link DynamicConfigPropertyDef} (name, value type T, default, label, description, requires)
 * per such field; the registry's admin config API reads that bean.
 *
 * @throws IllegalStateException (at build time) when a @Dynamic field has no default value or is
 *     not typed {@code Supplier<T>}.
 */
class DynamicConfigIndexSteps {

    private static final DotName CONFIG_PROPERTY = DotName.createSimple(ConfigProperty.class.getName());
    private static final DotName DYNAMIC = DotName.createSimple(Dynamic.class.getName());

    @BuildStep
    FeatureBuildItem feature() {
        return new FeatureBuildItem("config-index");
    }

    @BuildStep
    @Record(ExecutionTime.RUNTIME_INIT)
    void dynamicPropertyList(DynamicPropertiesInfoRecorder recorder, BeanDiscoveryFinishedBuildItem discovery,
            BuildProducer<SyntheticBeanBuildItem> beans) {
        List<DynamicConfigPropertyDef> defs = new ArrayList<>();
        for (InjectionPointInfo point : discovery.getInjectionPoints()) {
            if (point.isField() && point.getRequiredQualifier(CONFIG_PROPERTY) != null
                    && point.getTarget().asField().annotation(DYNAMIC) != null) {
                defs.add(describe(point));
            }
        }
        beans.produce(SyntheticBeanBuildItem.configure(DynamicConfigPropertyList.class)
                .runtimeValue(recorder.initializePropertiesInfo(defs))
                .unremovable().setRuntimeInit().done());
    }

    private static DynamicConfigPropertyDef describe(InjectionPointInfo point) {
        AnnotationInstance property = point.getRequiredQualifier(CONFIG_PROPERTY);
        AnnotationInstance dynamic = point.getTarget().asField().annotation(DYNAMIC);
        String name = property.value("name").asString();
        AnnotationValue defaultValue = property.value("defaultValue");
        if (defaultValue == null) {
            throw new IllegalStateException("@Dynamic config property '" + name + "' needs a defaultValue");
        }
        Type declared = point.getRequiredType();
        if (declared.kind() != Type.Kind.PARAMETERIZED_TYPE) {
            throw new IllegalStateException("@Dynamic config property '" + name + "' must be a Supplier<T>");
        }
        Class<?> valueType;
        try {
            valueType = Class.forName(declared.asParameterizedType().arguments().get(0).name().toString());
        } catch (ClassNotFoundException e) {
            throw new IllegalStateException("@Dynamic config property '" + name + "': unknown value type", e);
        }
        DynamicConfigPropertyDef def = new DynamicConfigPropertyDef(name, valueType, defaultValue.asString());
        if (dynamic.value("label") != null) {
            def.setLabel(dynamic.value("label").asString());
        }
        if (dynamic.value("description") != null) {
            def.setDescription(dynamic.value("description").asString());
        }
        if (dynamic.value("requires") != null) {
            def.setRequires(dynamic.value("requires").asStringArray());
        }
        return def;
    }
}
