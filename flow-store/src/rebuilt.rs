//! Columns of table `flows` that files store in other columns (`uuid`, `summary`): each is a
//! scalar function of the stored columns, which the table's projection and its filters call.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The text column `name` of table `flows`, made by `rebuild` from the stored columns (in the
/// order the caller passes them) of a batch of `rows` rows.
pub(crate) type Rebuild = fn(stored: &[ArrayRef], rows: usize) -> DfResult<ArrayRef>;

#[derive(Debug)]
struct Rebuilt {
    name: &'static str,
    columns: usize,
    signature: Signature,
    rebuild: Rebuild,
}

// A function is known by its name (each name has one `rebuild`): function pointers do not
// compare meaningfully.
impl PartialEq for Rebuilt {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Rebuilt {}

impl std::hash::Hash for Rebuilt {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Rebuilt {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let stored = ColumnarValue::values_to_arrays(&args.args)?;
        if stored.len() != self.columns {
            return Err(DataFusionError::Internal(format!(
                "{} takes {} columns, not {}",
                self.name,
                self.columns,
                stored.len()
            )));
        }
        Ok(ColumnarValue::Array((self.rebuild)(
            &stored,
            args.number_rows,
        )?))
    }
}

/// The function `name` of `columns` stored columns.
pub(crate) fn udf(name: &'static str, columns: usize, rebuild: Rebuild) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Rebuilt {
        name,
        columns,
        signature: Signature::any(columns, Volatility::Immutable),
        rebuild,
    }))
}
